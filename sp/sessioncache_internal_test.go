package sp

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
)

type countingProvider struct{ gets int }

func (p *countingProvider) GetSession(*http.Request) (samlsp.Session, error) {
	p.gets++
	return &Session{}, nil
}
func (p *countingProvider) CreateSession(http.ResponseWriter, *http.Request, *saml.Assertion) error {
	return nil
}
func (p *countingProvider) DeleteSession(http.ResponseWriter, *http.Request) error { return nil }

func withCookie(v string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: sessionCookieName, Value: v})
	return r
}

// The cache holds at most maxEntries sessions; beyond, sessions are read
// from the store every time rather than evicting live entries; expired
// entries make room.
func TestSessionCacheBound(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	inner := &countingProvider{}
	c := newSessionCache(inner, time.Second, 2, func() time.Time { return now })
	for _, v := range []string{"a", "b", "c", "a", "b", "c"} {
		if _, err := c.GetSession(withCookie(v)); err != nil {
			t.Fatal(err)
		}
	}
	if c.len() != 2 {
		t.Fatalf("cache holds %d entries, want the bound 2", c.len())
	}
	if inner.gets != 4 { // a, b, c, then c again (not cached); a and b hit
		t.Fatalf("provider read %d times, want 4", inner.gets)
	}
	now = now.Add(2 * time.Second)
	if _, err := c.GetSession(withCookie("c")); err != nil {
		t.Fatal(err)
	}
	if c.len() != 1 {
		t.Fatalf("after expiry the sweep left %d entries, want 1 (c)", c.len())
	}
	// A logout through this replica drops the entry at once.
	if err := c.DeleteSession(httptest.NewRecorder(), withCookie("c")); err != nil {
		t.Fatal(err)
	}
	if c.len() != 0 {
		t.Fatalf("DeleteSession left the entry")
	}
}
