package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crewjam/saml"

	"github.com/samlha/samlha/sp/keyring/keyringtest"
	"github.com/samlha/samlha/sp/relaystate"
	"github.com/samlha/samlha/store"
)

// What the store holds for a session reveals no identity: no NameID, no
// attribute value, nothing the cookie needs.
func TestSealedRecordHoldsNothingInClear(t *testing.T) {
	t.Parallel()
	f := newSessionFixture(t, "sp-1", "redis")
	c := f.login(t, assertionFor("alice@example.com", "idx-secret-index", nil))
	ck, err := ParseCookie(c.Value)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := f.p.store.Get(context.Background(), ck.StoreKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, clear := range []string{"alice", "example.com", "idx-secret-index", "0.9.2342", "uid", ck.id, c.Value[strings.Index(c.Value, ".")+1:]} {
		if bytes.Contains(rec, []byte(clear)) || strings.Contains(ck.StoreKey(), clear) {
			t.Errorf("the store holds %q in clear", clear)
		}
	}
	// And it is the session: it opens with the cookie.
	s, err := f.get(c)
	if err != nil || s.(*Session).GetNameID() != "alice@example.com" {
		t.Fatalf("session does not open: %v %v", s, err)
	}
}

// A record that this SP did not seal for this cookie does not authenticate:
// not one written by a writer of the store who chose the cookie (and so
// knows its secret) but lacks the SP's key, not a real record moved under
// another session's key, not a real record read with a wrong secret.
func TestSealedRecordForgeries(t *testing.T) {
	t.Parallel()
	f := newSessionFixture(t, "sp-1", "redis")
	ctx := context.Background()
	victim := f.login(t, assertionFor("bob@example.com", "idx-b", nil))
	attacker := f.login(t, assertionFor("mallory@example.com", "idx-m", nil))
	vck, _ := ParseCookie(victim.Value)
	ack, _ := ParseCookie(attacker.Value)

	// A writer of the store makes a cookie of its own and a record for it,
	// sealed as the SP would but with a key that is not the SP's.
	chosen := NewCookie("sp-1")
	_, sess, err := f.p.NewSession(assertionFor("bob@example.com", "idx-forged", nil), "sp-1")
	if err != nil {
		t.Fatal(err)
	}
	forged, err := Seal(keyringtest.Ring(t, "a key that is not the SP's"), chosen, sess)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, v []byte) {
		if err := f.p.store.Put(ctx, key, v, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	put(chosen.StoreKey(), forged)
	_, err = f.get(cookieOf(chosen))
	wantMiss(t, err, "invalid")
	if !strings.Contains(err.Error(), errSealForged.Error()) {
		t.Errorf("forged record: %v, want errSealForged", err)
	}

	// The same writer copies the victim's real record under its own
	// cookie's key.
	real, _ := f.p.store.Get(ctx, vck.StoreKey())
	put(ack.StoreKey(), real)
	wantMiss(t, func() error { _, err := f.get(attacker); return err }(), "invalid")

	// The victim's ID with a secret of the attacker's: refused, and the
	// victim's session is not deleted by the attempt.
	guess := vck
	guess.secret = chosen.secret
	wantMiss(t, func() error { _, err := f.get(cookieOf(guess)); return err }(), "invalid")
	if s, err := f.get(victim); err != nil || s.(*Session).GetNameID() != "bob@example.com" {
		t.Fatalf("the victim's session after the attempts: %v %v", s, err)
	}

	// Clear JSON, as the store held before sessions were sealed.
	put(chosen.StoreKey(), []byte(`{"c":{"sub":"bob@example.com"},"t":"2026-11-25T12:00:00Z","x":"2099-01-01T00:00:00Z"}`))
	wantMiss(t, func() error { _, err := f.get(cookieOf(chosen)); return err }(), "invalid")
}

// The SP's keys rotate: a record sealed under the old key opens on a replica
// whose ring has the new key first and the old second, is sealed again
// under the new key at that read, and no longer needs the old one.
func TestSealedRecordKeyRotation(t *testing.T) {
	t.Parallel()
	f := newSessionFixture(t, "sp-1", "redis")
	f.p.ring = keyringtest.Ring(t, "old")
	c := f.login(t, assertionFor("alice@example.com", "idx", nil))

	f.p.ring = keyringtest.Ring(t, "new")
	wantMiss(t, func() error { _, err := f.get(c); return err }(), "invalid")

	f.p.ring = keyringtest.Ring(t, "new", "old")
	if _, err := f.get(c); err != nil {
		t.Fatalf("ring [new old] cannot read a session sealed under old: %v", err)
	}
	f.p.ring = keyringtest.Ring(t, "new")
	if _, err := f.get(c); err != nil {
		t.Fatalf("the read under [new old] did not seal the session again under new: %v", err)
	}
}

// The session codec's decoder refuses what sealSession would not write.
func TestDecodeSessionRefuses(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"empty":         "",
		"not JSON":      "\x00\x01",
		"no times":      `{"c":{"sub":"x"}}`,
		"no expiry":     `{"c":{"sub":"x"},"t":"2026-11-25T12:00:00Z"}`,
		"wrong types":   `{"c":1,"t":"2026-11-25T12:00:00Z","x":"2026-11-25T12:00:00Z"}`,
		"too large":     `{"c":{"sub":"` + strings.Repeat("a", maxSessionJSON) + `"}}`,
		"trailing junk": `{"c":{},"t":"2026-11-25T12:00:00Z","x":"2026-11-25T12:00:00Z"}x`,
	} {
		if _, err := decodeSession([]byte(in)); !errors.Is(err, errSealMalformed) {
			t.Errorf("%s: %v, want errSealMalformed", name, err)
		}
	}
	if _, _, err := Open(keyringtest.Ring(t, "k"), NewCookie("sp-1"), []byte{sealVersion, 0}); !errors.Is(err, errSealMalformed) {
		t.Errorf("short record: %v", err)
	}
}

// The session cookie's parser accepts exactly what newSessionCookie makes.
func TestParseSessionCookie(t *testing.T) {
	t.Parallel()
	c := NewCookie("sp-1.a_b")
	got, err := ParseCookie(c.String())
	if err != nil || got.instance != c.instance || got.id != c.id || !bytes.Equal(got.secret, c.secret) || got.StoreKey() != c.StoreKey() {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if len(c.String()) > maxSessionCookieLen {
		t.Errorf("cookie of %d bytes, longer than the bound %d", len(c.String()), maxSessionCookieLen)
	}
	v := c.String()
	for _, bad := range []string{"", v + "A", v[:len(v)-1], strings.Replace(v, ".", "~", 1), strings.Replace(v, "~", ".", 1),
		"sp-1~" + c.id, "x y~" + v[strings.Index(v, "~")+1:], strings.Repeat("a", 40) + "a" + v[strings.Index(v, "~"):]} {
		if _, err := ParseCookie(bad); !errors.Is(err, errSessionCookie) {
			t.Errorf("%q: %v, want errSessionCookie", bad, err)
		}
	}
	if store.MaxKeyLen < len(c.StoreKey()) {
		t.Errorf("store key of %d bytes", len(c.StoreKey()))
	}
}

func cookieOf(c Cookie) *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: c.String()}
}

// Revocations (IdP logout) hold on every replica during a key rotation,
// whichever ring each has: they are written and read under every key. Their
// keys are peppered with the SP's key, so a reader of the store cannot test
// NameIDs against them.
func TestRevocationAcrossKeyRotation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, writer, reader string }{
		{"writer has the new key, reader not yet", "new,old", "old"},
		{"reader has the new key first, writer not yet", "old", "new,old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newSessionFixture(t, "sp-1", "redis")
			f.p.ring = keyringtest.Ring(t, "old")
			c := f.login(t, assertionFor("alice@example.com", "idx-1", nil))
			f.clock.Advance(time.Second)
			f.p.ring = keyringtest.Ring(t, strings.Split(tc.writer, ",")...)
			req := &saml.LogoutRequest{NameID: &saml.NameID{Value: "alice@example.com"}}
			if err := f.p.TerminateSessions(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			f.p.ring = keyringtest.Ring(t, strings.Split(tc.reader, ",")...)
			wantMiss(t, func() error { _, err := f.get(c); return err }(), "revoked")
		})
	}
	f := newSessionFixture(t, "sp-1", "redis")
	if err := f.p.TerminateSessions(context.Background(), &saml.LogoutRequest{NameID: &saml.NameID{Value: "alice@example.com"}}); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("alice@example.com"))
	if _, err := f.p.store.Get(context.Background(), keyRevoked+"nameid:"+hex.EncodeToString(sum[:])); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a revocation is stored under the plain hash of the NameID: %v", err)
	}
	if _, err := f.p.store.Get(context.Background(), keyRevoked+nameIDRevocationKey(f.p.ring.Sealing().Pepper, "alice@example.com")); err != nil {
		t.Errorf("no revocation under the peppered key: %v", err)
	}
}

// The store key, now made in a caller's buffer, is the one records were
// always stored under: the prefix and the base64 of SHA-256(instance, Sep,
// id), for the longest instance ID too.
func TestStoreKeyIsTheStoredOne(t *testing.T) {
	t.Parallel()
	for _, inst := range []string{"sp-1", strings.Repeat("i", relaystate.MaxInstanceIDLen)} {
		c := NewCookie(inst)
		sum := sha256.Sum256([]byte(c.instance + relaystate.Sep + c.id))
		want := keySession + base64.RawURLEncoding.EncodeToString(sum[:])
		if got := c.StoreKey(); got != want || len(got) != storeKeyLen {
			t.Errorf("instance %q: StoreKey %q (%d bytes), want %q (%d)", inst, got, len(got), want, storeKeyLen)
		}
	}
}
