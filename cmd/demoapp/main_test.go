package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

const (
	issuer   = "http://gateway.test"
	audience = "http://app.test"
)

func sign(t *testing.T, k *ecdsa.PrivateKey, kid string, mutate func(*jwt.RegisteredClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.RegisteredClaims{Issuer: issuer, Audience: jwt.ClaimStrings{audience}, Subject: "alice@example.com",
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute))}
	if mutate != nil {
		mutate(&c)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifiesIdentityJWT(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var published atomic.Pointer[jose.JSONWebKeySet]
	published.Store(&jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k1.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	var fetches atomic.Int32
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		_ = json.NewEncoder(w).Encode(published.Load())
	}))
	defer jwks.Close()
	o := &options{jwksURL: jwks.URL, issuer: issuer, audience: audience, prefix: "X-Samlha-", minRefresh: time.Nanosecond, requireJWT: true}
	a := newApp(o, slog.New(slog.DiscardHandler), jwks.Client())

	get := func(tok string) (int, report) {
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		req.Header.Set("X-Samlha-User", "alice")
		if tok != "" {
			req.Header.Set("X-Samlha-Jwt-Assertion", tok)
		}
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		var rep report
		_ = json.Unmarshal(rec.Body.Bytes(), &rep)
		return rec.Code, rep
	}
	for _, tc := range []struct {
		name string
		tok  string
		want string
	}{
		{"valid", sign(t, k1, "k1", nil), "verified"},
		{"absent", "", "absent"},
		{"wrong audience", sign(t, k1, "k1", func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"http://other.test"} }), "invalid"},
		{"wrong issuer", sign(t, k1, "k1", func(c *jwt.RegisteredClaims) { c.Issuer = "http://evil.test" }), "invalid"},
		{"expired", sign(t, k1, "k1", func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour)) }), "invalid"},
		{"signed by another key under a published kid", sign(t, other, "k1", nil), "invalid"},
		{"unknown kid", sign(t, k2, "k2", nil), "invalid"},
		{"garbage", "not.a.jwt", "invalid"},
	} {
		code, rep := get(tc.tok)
		if rep.JWT != tc.want {
			t.Errorf("%s: jwt %q (%s), want %q", tc.name, rep.JWT, rep.Error, tc.want)
		}
		if want := map[bool]int{true: 200, false: 401}[tc.want == "verified"]; code != want {
			t.Errorf("%s: status %d, want %d with --require-jwt", tc.name, code, want)
		}
	}
	// Rotation: the gateway publishes k2; a token under k2 makes the app
	// fetch the set again and verify.
	published.Store(&jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &k2.PublicKey, KeyID: "k2", Algorithm: "ES256", Use: "sig"}, {Key: &k1.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	before := fetches.Load()
	if _, rep := get(sign(t, k2, "k2", nil)); rep.JWT != "verified" || fetches.Load() != before+1 {
		t.Fatalf("after rotation: %q %s, fetches %d -> %d", rep.JWT, rep.Error, before, fetches.Load())
	}
	if _, rep := get(sign(t, k1, "k1", nil)); rep.JWT != "verified" || fetches.Load() != before+1 {
		t.Fatalf("old key still published: %q, fetches %d", rep.JWT, fetches.Load())
	}
}

func TestFlags(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, want := range []string{"--jwks-url", "$SAMLHA_DEMOAPP_JWKS_URL", "--require-jwt", "--audience"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	_, err := parseFlags([]string{"--jwks-url", "http://x/jwks", "--require-jwt"}, &out)
	if err == nil || !strings.Contains(err.Error(), "--issuer and --audience") {
		t.Fatalf("--jwks-url without issuer/audience: %v", err)
	}
	_, err = parseFlags([]string{"--require-jwt"}, &out)
	if err == nil || !strings.Contains(err.Error(), "--require-jwt needs --jwks-url") {
		t.Fatalf("--require-jwt alone: %v", err)
	}
}

// The HTML page marks the user with id="user" only when the JWT verified:
// samllab's Chromium check reads the login's outcome from it.
func TestHTMLMarksTheVerifiedUser(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k", Algorithm: "ES256", Use: "sig"}}})
	}))
	defer jwks.Close()
	o := &options{jwksURL: jwks.URL, issuer: issuer, audience: audience, prefix: "X-Samlha-", minRefresh: time.Second, requireJWT: true}
	a := newApp(o, slog.New(slog.DiscardHandler), jwks.Client())
	for _, tc := range []struct {
		tok  string
		want bool
	}{{sign(t, k, "k", nil), true}, {"forged", false}} {
		req := httptest.NewRequest(http.MethodGet, "/app", nil)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("X-Samlha-User", "alice")
		req.Header.Set("X-Samlha-Jwt-Assertion", tc.tok)
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		if got := strings.Contains(rec.Body.String(), `<span id="user">alice</span>`); got != tc.want {
			t.Errorf("token %.10q: page marks the user: %v, want %v\n%s", tc.tok, got, tc.want, rec.Body.String())
		}
	}
}

// A key set that fails, or is too large, is asked for at most every
// minRefresh, not once per request: a token with an unknown key ID must not
// turn the app into a flood of fetches against the gateway.
func TestKeySetFetchBounded(t *testing.T) {
	for name, serve := range map[string]http.HandlerFunc{
		"failing":   func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusInternalServerError) },
		"too large": func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(strings.Repeat(" ", 1<<20+10))) },
	} {
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1); serve(w, r) }))
		k := &keySet{url: srv.URL, client: srv.Client(), minRefresh: time.Hour}
		_, first := k.get(context.Background(), "unknown")
		for range 4 {
			_, _ = k.get(context.Background(), "unknown")
		}
		srv.Close()
		if hits.Load() != 1 {
			t.Errorf("%s key set: %d fetches for 5 tokens, want 1", name, hits.Load())
		}
		if name == "too large" && (first == nil || !strings.Contains(first.Error(), "larger than")) {
			t.Errorf("too large key set: %v, want it named as too large", first)
		}
	}
}
