package sp_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/devidp"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/sp/sptest/devidptest"
	"github.com/samlha/samlha/store/memory"
)

// An SP key rollover while logins are in flight loses none: logins begun
// before the swap (their responses encrypted to the old certificate) and
// after it (encrypted to the new one) all finish on the rolled-over SP,
// which signs with the new key and decrypts with either. Without the next
// key, the old responses would fail (checked, so the test can fail).
func TestSPCertificateRolloverLosesNoLogin(t *testing.T) {
	t.Parallel()
	k1, c1 := spKeyPair(t)
	k2, c2 := newKeyPair(t)
	idp := devidptest.Start(t, devidp.Config{})
	st := memory.New(memory.Options{})
	t.Cleanup(func() { st.Close() })

	var current atomic.Pointer[sp.SP]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { current.Load().ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	root, _ := url.Parse(srv.URL)
	logw := devidptest.LogWriter(t)
	newSP := func(key crypto.Signer, cert *x509.Certificate, nextKey crypto.Signer, nextCert *x509.Certificate) *sp.SP {
		s, err := sp.New(sp.Config{InstanceID: "sp-1", RootURL: root, Store: st, Key: key, Certificate: cert,
			NextKey: nextKey, NextCertificate: nextCert, IDP: &login.IDPMetadata{Static: idp.Metadata()},
			// One session ring throughout: this test is about the SAML key
			// pair (the ring derived from it rolls over with it too, see
			// TestSessionKeyRingFollowsSPKeyRollover; here the replica
			// without the old key must fail on decryption, not earlier).
			SessionKeys: [][32]byte{sha256.Sum256([]byte("rollover test session key"))},
			Logger:      slog.New(slog.NewTextHandler(logw, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.LoadIDPMetadata(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s
	}
	register := func(first, second *x509.Certificate) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/saml/metadata")
		if err != nil {
			t.Fatal(err)
		}
		md, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// Both certificates are published, the current one first.
		s := string(md)
		i1 := strings.Index(s, base64.StdEncoding.EncodeToString(first.Raw))
		i2 := strings.Index(s, base64.StdEncoding.EncodeToString(second.Raw))
		if i1 < 0 || i2 < 0 || i1 > i2 {
			t.Fatalf("metadata does not publish the current certificate, then the next (at %d and %d)", i1, i2)
		}
		if err := idp.RegisterSPMetadata("samlha", md); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	begin := func(n int) ([]*sptest.Browser, []*sptest.PendingForm) {
		var bs []*sptest.Browser
		var fs []*sptest.PendingForm
		for range n {
			b := sptest.NewBrowser(sptest.Options{RequestTimeout: 20 * time.Second})
			f, res, err := b.LoginUntilACS(ctx, srv.URL+"/app", "alice", "alice-password")
			if err != nil {
				t.Fatalf("begin login: %v\n%s", err, describe(res))
			}
			bs, fs = append(bs, b), append(fs, f)
		}
		return bs, fs
	}

	// Step 1: the next pair is published; the current one signs.
	current.Store(newSP(k1, c1, k2, c2))
	register(c1, c2)
	oldBrowsers, oldForms := begin(4) // responses encrypted to c1

	// A replica without the old key cannot finish them: what the next key
	// is for.
	current.Store(newSP(k2, c2, nil, nil))
	if res := oldBrowsers[3].Submit(ctx, oldForms[3]); res.OK || res.Cause != "response-invalid" {
		t.Fatalf("a response encrypted to the old certificate finished without the old key:\n%s", describe(res))
	}

	// Step 2: swap (the next pair becomes current, the old one next), and
	// the IdP learns the new order; logins begun before and after finish.
	current.Store(newSP(k2, c2, k1, c1))
	register(c2, c1)
	newBrowsers, newForms := begin(3) // encrypted to c2
	for i, f := range oldForms[:3] {
		if res := oldBrowsers[i].Submit(ctx, f); !res.OK {
			t.Fatalf("login begun before the swap lost:\n%s", describe(res))
		}
	}
	for i, f := range newForms {
		if res := newBrowsers[i].Submit(ctx, f); !res.OK {
			t.Fatalf("login begun after the swap lost:\n%s", describe(res))
		}
	}
}
