package sp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/crewjam/saml/samlsp"

	"github.com/samlha/samlha/store/memory"
)

// FuzzSessionRecord feeds GetSession a session cookie and the record the
// store holds under the session key it names (the session decode path of
// store mode, as it is before sealed sessions). It must never panic; a
// cookie that is not a samlha session ID, or a record that does not
// decode or has expired, is a session miss (samlsp.ErrNoSession), never
// another error and never a session; a session it returns is one whose
// absolute expiry is still ahead.
//
//	go test -run '^$' -fuzz '^FuzzSessionRecord$' -fuzztime 10s ./sp
func FuzzSessionRecord(f *testing.F) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	good, _ := json.Marshal(&Session{LoginInstance: "sp-1", ACSInstance: "sp-2", Created: now, Touched: now,
		Expires: now.Add(time.Hour), JWTSessionClaims: samlsp.JWTSessionClaims{SAMLSession: true}})
	cookie := "sp-1~" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	f.Add(cookie, good)
	f.Add(cookie, []byte(`{"x":"2000-01-01T00:00:00Z"}`))
	f.Add(cookie, []byte(`{"c":{"attr":{"uid":["alice"]}},"x":"2999-01-01T00:00:00Z"}`))
	f.Add("sp-1~short", good)
	f.Add("", []byte(nil))
	f.Fuzz(func(t *testing.T, ck string, record []byte) {
		clock := newFakeClock(now)
		st := memory.New(memory.Options{Now: clock.Now, JanitorInterval: -1})
		defer st.Close()
		p := &storeSessions{store: st, storeKind: "memory", instance: "sp-1", idle: 30 * time.Minute, absolute: 8 * time.Hour,
			timeout: time.Second, now: clock.Now, onErr: func(string, error) {},
			revoked: &revocations{store: st, timeout: time.Second, now: clock.Now}}
		if len(record) > 0 {
			if err := st.Put(context.Background(), sessionKeyFor(ck), record, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		req := httptest.NewRequest("GET", "/app", nil)
		if (&http.Cookie{Name: sessionCookieName, Value: ck}).Valid() != nil {
			return // no browser can send it
		}
		req.AddCookie(&http.Cookie{Name: sessionCookieName, Value: ck})
		sess, err := p.GetSession(req)
		if ck == cookie && bytes.Equal(record, good) && err != nil {
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
		}
	})
}
