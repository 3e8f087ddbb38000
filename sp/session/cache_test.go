package session

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
)

// everySession is a session provider that knows every cookie.
type everySession struct{}

func (everySession) CreateSession(http.ResponseWriter, *http.Request, *saml.Assertion) error {
	return nil
}
func (everySession) DeleteSession(http.ResponseWriter, *http.Request) error { return nil }
func (everySession) GetSession(*http.Request) (samlsp.Session, error)       { return &Session{}, nil }

// A cache full of live sessions is swept at most once per TTL, not on
// every miss: a flood of new cookies costs one scan of the cache, not one
// scan each under the write lock.
func TestSessionCacheFullSweepsOncePerTTL(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	c := NewCache(everySession{}, time.Second, 100, func() time.Time { return now })
	get := func(i int) {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(&http.Cookie{Name: CookieName, Value: fmt.Sprint("s", i)})
		if _, err := c.GetSession(r); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 1000 {
		get(i)
	}
	if len(c.entries) != 100 || c.sweeps != 1 {
		t.Fatalf("after 1000 cookies on a cache of 100 live entries: %d entries, %d sweeps; want 100 and 1", len(c.entries), c.sweeps)
	}
	now = now.Add(time.Second)
	get(5000)
	if c.sweeps != 2 || len(c.entries) != 1 {
		t.Fatalf("once the TTL passed: %d sweeps, %d entries; want 2 and 1 (the expired ones dropped)", c.sweeps, len(c.entries))
	}
}
