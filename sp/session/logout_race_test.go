package session

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/samlha/samlha/store"
	_ "github.com/samlha/samlha/store/redis"
	"github.com/samlha/samlha/store/redis/redistest"
)

// pausingStore pauses the first Get of a session key once it has read the
// value, until the test lets it go on: the moment between GetSession's read
// and its refresh write.
type pausingStore struct {
	store.Store
	armed  atomic.Bool
	read   chan struct{} // closed when the paused Get has read
	resume chan struct{} // closed by the test to let it return
}

func (s *pausingStore) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := s.Store.Get(ctx, key)
	if strings.HasPrefix(key, keySession) && s.armed.CompareAndSwap(true, false) {
		close(s.read)
		<-s.resume
	}
	return b, err
}

// A logout that lands between GetSession's read and its sliding-expiry
// write is not undone: the write is a Swap, which writes only over a live
// record, and the request that raced the logout gets no session either.
func TestRefreshDoesNotResurrectLoggedOutSession(t *testing.T) {
	t.Parallel()
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		testRefreshAfterLogout(t, newSessionFixture(t, "sp-1", "memory"))
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		st, err := store.Open(context.Background(), srv.URL(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		f := newSessionFixture(t, "sp-1", "redis")
		f.p.store, f.p.revoked.store = st, st
		testRefreshAfterLogout(t, f)
	})
}

func testRefreshAfterLogout(t *testing.T, f *sessionFixture) {
	ps := &pausingStore{Store: f.p.store, read: make(chan struct{}), resume: make(chan struct{})}
	f.p.store = ps
	c := f.login(t, assertionFor("alice@example.com", "idx", nil))
	f.clock.Advance(f.p.idle/4 + time.Minute) // the next read refreshes

	ps.armed.Store(true)
	type result struct {
		err error
	}
	done := make(chan result, 1)
	go func() {
		_, err := f.get(c)
		done <- result{err}
	}()
	select {
	case <-ps.read:
	case <-time.After(10 * time.Second):
		t.Fatal("GetSession never read the session")
	}
	// Logout, while GetSession holds what it read.
	logout := httptest.NewRequest("POST", "/logout", nil)
	logout.AddCookie(c)
	if err := f.p.DeleteSession(httptest.NewRecorder(), logout); err != nil {
		t.Fatal(err)
	}
	close(ps.resume)
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("GetSession did not return")
	}
	wantMiss(t, res.err, "not-found")

	ck, _ := ParseCookie(c.Value)
	if _, err := ps.Store.Get(context.Background(), ck.StoreKey()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the logged-out session is back in the store: %v", err)
	}
	wantMiss(t, func() error { _, err := f.get(c); return err }(), "not-found")
}
