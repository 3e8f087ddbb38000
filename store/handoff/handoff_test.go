package handoff_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/handoff"
	"github.com/samlha/samlha/store/memory"
	_ "github.com/samlha/samlha/store/redis"
	"github.com/samlha/samlha/store/redis/redistest"
	"github.com/samlha/samlha/store/storetest"
)

func openRedis(t *testing.T, url string) store.Store {
	t.Helper()
	if strings.Contains(url, "?") {
		url += "&timeout=5s&pool_size=64"
	} else {
		url += "?timeout=5s&pool_size=64"
	}
	s, err := store.Open(t.Context(), url, nil)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newStore(t *testing.T, url string) *handoff.Store {
	t.Helper()
	h, err := handoff.New(memory.New(memory.Options{}), openRedis(t, url))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// The store keeps the contract before and after the handoff, on a real
// Redis.
func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	t.Run("BeforeHandoff", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return newStore(t, srv.URL()) })
	})
	t.Run("AfterHandoff", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			h := newStore(t, srv.URL())
			if _, err := h.Handoff(t.Context()); err != nil {
				t.Fatal(err)
			}
			return h
		})
	})
}

// Two memory replicas move to Redis, one after the other, and every
// record either of them made is found, used and kept by the other, with
// its time left, as the lab's migrate scenario does with real processes.
func TestTwoReplicasHandOffInTurn(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	a, b := newStore(t, srv.URL()), newStore(t, srv.URL())
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check(a.Put(ctx, "session:a", []byte("alice"), time.Hour))
	check(a.Put(ctx, "login:a", []byte("pending"), time.Minute))
	check(a.Put(ctx, "short:a", []byte("x"), 10*time.Millisecond))
	check(b.Put(ctx, "session:b", []byte("bob"), time.Hour))

	// Before a hands off, b does not see a's state: it is in a's memory.
	if _, err := b.Get(ctx, "session:a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("b reads a's session before a handed off: %v", err)
	}
	time.Sleep(20 * time.Millisecond) // short:a expires: it is not copied
	n, err := a.Handoff(ctx)
	check(err)
	if n != 2 || !a.HandedOff() {
		t.Fatalf("a copied %d entries (handed off: %v), want the 2 live ones", n, a.HandedOff())
	}
	shared := openRedis(t, srv.URL())
	if _, err := shared.Get(ctx, "short:a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an expired entry was copied: %v", err)
	}
	// b (still on its memory) finds a's session and login through Redis,
	// consumes the login once, and refreshes the session where it lives.
	if v, err := b.Get(ctx, "session:a"); err != nil || string(v) != "alice" {
		t.Fatalf("b reads a's session after the handoff: %q, %v", v, err)
	}
	vals, err := b.GetMany(ctx, []string{"session:b", "session:a", "nope"})
	check(err)
	if string(vals[0]) != "bob" || string(vals[1]) != "alice" || vals[2] != nil {
		t.Errorf("b's GetMany across memory and Redis: %q", vals)
	}
	old, then, err := b.Commit(ctx, store.Commit{Key: "login:a", Value: []byte("used"), TTL: time.Minute, IfPrefix: []byte("pend"),
		Then: []store.Write{{Key: "session:a2", Value: []byte("alice-2"), TTL: time.Hour}}})
	if err != nil || string(old) != "pending" || len(then) != 1 || then[0] != nil {
		t.Fatalf("b finishes a's login: %q %v %v", old, then, err)
	}
	if _, _, err := b.Commit(ctx, store.Commit{Key: "login:a", Value: []byte("used"), TTL: time.Minute, IfPrefix: []byte("pend")}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a second commit of a's login: %v, want a conflict", err)
	}
	if v, err := shared.Get(ctx, "session:a2"); err != nil || string(v) != "alice-2" {
		t.Errorf("the session made by finishing a's login lives where the login did (Redis): %q %v", v, err)
	}
	if _, err := b.Swap(ctx, "session:a", []byte("alice-refreshed"), 2*time.Hour); err != nil {
		t.Fatalf("b refreshes a's session: %v", err)
	}
	// b's own state stays in b's memory until b hands off, and then
	// replaces what Redis holds, with its time left.
	if _, err := shared.Get(ctx, "session:b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("b's session reached Redis before b handed off: %v", err)
	}
	check(shared.Put(ctx, "session:b", []byte("stale"), time.Hour))
	if n, err := b.Handoff(ctx); err != nil || n != 1 {
		t.Fatalf("b's handoff: %d, %v; want its one entry", n, err)
	}
	if v, err := shared.Get(ctx, "session:b"); err != nil || string(v) != "bob" {
		t.Errorf("after b's handoff Redis holds %q (%v), want b's bob", v, err)
	}
	// After the handoff b works on Redis only: a new session lands there.
	check(b.Put(ctx, "session:new", []byte("carol"), time.Hour))
	if v, err := shared.Get(ctx, "session:new"); err != nil || string(v) != "carol" {
		t.Errorf("a write after the handoff: Redis holds %q (%v)", v, err)
	}
	// Deletes reach both stores before the handoff (a logout).
	c := newStore(t, srv.URL())
	check(c.Put(ctx, "session:c", []byte("dave"), time.Hour))
	check(shared.Put(ctx, "session:c", []byte("dave"), time.Hour))
	check(c.Delete(ctx, "session:c"))
	if _, err := c.Get(ctx, "session:c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a deleted session is still found: %v", err)
	}
	// A second Handoff does nothing.
	if n, err := b.Handoff(ctx); n != 0 || err != nil {
		t.Errorf("second handoff: %d, %v", n, err)
	}
}

// Handoff copies the time each entry has left: not a fresh TTL.
func TestHandoffKeepsTimeLeft(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	h := newStore(t, srv.URL())
	if err := h.Put(ctx, "k", []byte("v"), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if _, err := h.Handoff(ctx); err != nil {
		t.Fatal(err)
	}
	shared := openRedis(t, srv.URL())
	if _, err := shared.Get(ctx, "k"); err != nil {
		t.Fatalf("right after the handoff: %v", err)
	}
	time.Sleep(250 * time.Millisecond) // 400ms after the Put: gone, had the TTL been kept
	if _, err := shared.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("400ms after a Put for 300ms the copied entry is still there: %v", err)
	}
}

// Operations that arrive while Handoff copies wait for it, and then go to
// the shared store: none of them lands in memory after the copy.
func TestNoWriteIsLostAroundTheSwitch(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	h := newStore(t, srv.URL())
	shared := openRedis(t, srv.URL())
	const writers, each = 8, 50
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range each {
				key := "w" + string(rune('a'+w)) + ":" + string(rune('A'+i%26)) + string(rune('A'+i/26))
				if err := h.Put(ctx, key, []byte("v"), time.Hour); err != nil {
					t.Errorf("put %s: %v", key, err)
				}
			}
		}()
	}
	close(start)
	time.Sleep(time.Millisecond)
	if _, err := h.Handoff(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for w := range writers {
		for i := range each {
			key := "w" + string(rune('a'+w)) + ":" + string(rune('A'+i%26)) + string(rune('A'+i/26))
			if _, err := shared.Get(ctx, key); err != nil {
				t.Fatalf("%s is not in the shared store after the handoff: %v", key, err)
			}
		}
	}
}

// failingShared is a shared store whose writes fail.
type failingShared struct{ *memory.Store }

func (failingShared) Shared() bool { return true }
func (f failingShared) PutBatch(ctx context.Context, ws []store.Write) []error {
	errs := make([]error, len(ws))
	for i := range errs {
		errs[i] = store.ErrUnavailable
	}
	return errs
}

// A handoff that cannot write keeps the replica on its memory: nothing is
// switched, nothing is lost from memory.
func TestFailedHandoffSwitchesNothing(t *testing.T) {
	ctx := context.Background()
	h, err := handoff.New(memory.New(memory.Options{}), failingShared{memory.New(memory.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.Put(ctx, "k", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handoff(ctx); !errors.Is(err, store.ErrUnavailable) || h.HandedOff() {
		t.Fatalf("handoff to a failing store: %v (handed off: %v)", err, h.HandedOff())
	}
	if v, err := h.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Errorf("after a failed handoff the memory entry reads %q, %v", v, err)
	}
}

func TestNewRefusesAStoreThatIsNotShared(t *testing.T) {
	if _, err := handoff.New(memory.New(memory.Options{}), memory.New(memory.Options{})); err == nil {
		t.Error("handoff to a memory store was accepted")
	}
	if _, err := handoff.New(nil, nil); err == nil {
		t.Error("nil stores were accepted")
	}
}
