package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/crewjam/saml/samlsp"
	"github.com/jonboulle/clockwork"

	"github.com/samlha/samlha/sp/keyring/keyringtest"
	"github.com/samlha/samlha/store/memory"
)

// FuzzSessionRecord feeds GetSession a session cookie and the record the
// store holds under the session key it names. With seal set, the record is
// taken as the plaintext of a session and sealed for that cookie under the
// SP's ring, so the fuzzer reaches the JSON decoder behind the AEAD; without
// it, the record is stored as it is, as a writer to the store would. It must
// never panic; a cookie that is not a samlha session cookie, or a record that
// does not open, does not decode or has expired, is a session miss
// (samlsp.ErrNoSession), never another error and never a session; a session
// it returns is one whose absolute expiry is still ahead, and never one from
// an unsealed record.
//
//	go test -run '^$' -fuzz '^FuzzSessionRecord$' -fuzztime 10s ./sp
func FuzzSessionRecord(f *testing.F) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	good, _ := json.Marshal(&Session{LoginInstance: "sp-1", ACSInstance: "sp-2", Created: now, Touched: now,
		Expires: now.Add(time.Hour), JWTSessionClaims: samlsp.JWTSessionClaims{SAMLSession: true}})
	cookie := "sp-1~" + strings.Repeat("A", sessionIDLen) + sessionSecretSep + strings.Repeat("B", 43)
	f.Add(cookie, good, true)
	f.Add(cookie, good, false)
	f.Add(cookie, []byte(`{"x":"2000-01-01T00:00:00Z"}`), true)
	f.Add(cookie, []byte(`{"c":{"attr":{"uid":["alice"]}},"x":"2999-01-01T00:00:00Z"}`), true)
	f.Add("sp-1~short", good, true)
	f.Add("", []byte(nil), false)
	ring := keyringtest.Ring(f, "fuzz")
	f.Fuzz(func(t *testing.T, ck string, record []byte, seal bool) {
		clock := clockwork.NewFakeClockAt(now)
		st := memory.New(memory.Options{Now: clock.Now, JanitorInterval: -1})
		defer st.Close()
		p := &Provider{store: st, storeKind: "memory", instance: "sp-1", idle: 30 * time.Minute, absolute: 8 * time.Hour,
			timeout: time.Second, now: clock.Now, onErr: func(string, error) {},
			revoked: &Revocations{store: st, timeout: time.Second, now: clock.Now}, ring: ring}
		c, perr := ParseCookie(ck)
		if perr == nil && len(record) > 0 {
			stored := record
			if seal {
				var err error
				if stored, err = sealPlain(ring, c, record); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Put(context.Background(), c.StoreKey(), stored, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		req := httptest.NewRequest("GET", "/app", nil)
		if (&http.Cookie{Name: CookieName, Value: ck}).Valid() != nil {
			return // no browser can send it
		}
		req.AddCookie(&http.Cookie{Name: CookieName, Value: ck})
		sess, err := p.GetSession(req)
		if ck == cookie && bytes.Equal(record, good) && seal && err != nil {
			t.Fatalf("the well-formed record is no session: %v", err) // the target would pass by refusing all
		}
		switch {
		case err != nil && !errors.Is(err, samlsp.ErrNoSession):
			t.Fatalf("GetSession: %v, not a session miss", err)
		case err != nil && sess != nil:
			t.Fatalf("GetSession returned a session and %v", err)
		case err == nil:
			s, ok := sess.(*Session)
			if !ok || !now.Before(s.Expires) {
				t.Fatalf("GetSession returned %#v", sess)
			}
			if !seal {
				t.Fatalf("an unsealed record written to the store authenticated: %#v", sess)
			}
		}
	})
}
