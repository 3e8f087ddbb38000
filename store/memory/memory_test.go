package memory_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/memory"
	"github.com/samlha/samlha/store/storetest"
)

func TestConformance(t *testing.T) {
	t.Run("Janitor", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			return memory.New(memory.Options{JanitorInterval: 10 * time.Millisecond})
		})
	})
	t.Run("LazyExpiryOnly", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			return memory.New(memory.Options{JanitorInterval: -1, Shards: 1})
		})
	})
	t.Run("Open", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			s, err := store.Open(t.Context(), "memory://?shards=8&janitor=50ms", nil)
			if err != nil {
				t.Fatalf("store.Open: %v", err)
			}
			return s
		})
	})
}

// clock is a clock that moves only when told to.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newStore(t *testing.T, opts memory.Options) *memory.Store {
	t.Helper()
	s := memory.New(opts)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestExpiryFollowsTheClock(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clk := newClock()
	s := newStore(t, memory.Options{Now: clk.Now, JanitorInterval: -1})
	for _, k := range []string{"get", "swap", "pia"} {
		if err := s.Put(ctx, k, []byte("v"), time.Minute); err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
	}
	clk.Advance(time.Minute - time.Nanosecond)
	if _, err := s.Get(ctx, "get"); err != nil {
		t.Fatalf("Get just before the TTL ends: %v", err)
	}
	clk.Advance(time.Nanosecond)
	if _, err := s.Get(ctx, "get"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get when the TTL ends: %v, want ErrNotFound", err)
	}
	if _, err := s.Swap(ctx, "swap", []byte("new"), time.Minute); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Swap when the TTL ends: %v, want ErrNotFound", err)
	}
	if err := s.PutIfAbsent(ctx, "pia", []byte("new"), time.Minute); err != nil {
		t.Fatalf("PutIfAbsent when the TTL ends: %v, want success", err)
	}
	if got, want := s.Len(), 1; got != want {
		t.Fatalf("Len() = %d after the expired entries were touched, want %d", got, want)
	}
}

func TestHugeTTLDoesNotOverflow(t *testing.T) {
	t.Parallel()
	s := newStore(t, memory.Options{JanitorInterval: -1})
	if err := s.Put(t.Context(), "k", []byte("v"), math.MaxInt64); err != nil {
		t.Fatalf("Put with the largest TTL: %v", err)
	}
	if _, err := s.Get(t.Context(), "k"); err != nil {
		t.Fatalf("Get after Put with the largest TTL: %v", err)
	}
}

func TestFullRefusesNewKeysOnly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t, memory.Options{MaxEntries: 3, Shards: 4, JanitorInterval: -1})
	for _, k := range []string{"a", "b", "c"} {
		if err := s.Put(ctx, k, []byte(k), time.Hour); err != nil {
			t.Fatalf("Put(%q) below the limit: %v", k, err)
		}
	}
	wantFull := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrFull) {
			t.Fatalf("%s of a new key in a full store: %v, want ErrFull", op, err)
		}
		if store.IsUnavailable(err) || errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s in a full store: %v also matches ErrUnavailable or ErrNotFound", op, err)
		}
		if !strings.Contains(err.Error(), "max_entries") {
			t.Fatalf("%s in a full store: %q does not name max_entries", op, err)
		}
	}
	wantFull("Put", s.Put(ctx, "d", []byte("d"), time.Hour))
	wantFull("PutIfAbsent", s.PutIfAbsent(ctx, "d", []byte("d"), time.Hour))
	errs := s.PutBatch(ctx, []store.Write{{Key: "a", Value: []byte("a2"), TTL: time.Hour}, {Key: "d", Value: []byte("d"), TTL: time.Hour}})
	if errs[0] != nil {
		t.Fatalf("PutBatch replacing a present key in a full store: %v", errs[0])
	}
	wantFull("PutBatch", errs[1])
	// A commit swaps a present key; its Then writes of new keys are
	// refused one by one, and replacing a present one still works.
	old, then, err := s.Commit(ctx, store.Commit{Key: "c", Value: []byte("T|"), TTL: time.Hour,
		Then: []store.Write{{Key: "d", Value: []byte("d"), TTL: time.Hour}, {Key: "b", Value: []byte("b1"), TTL: time.Hour}}})
	if err != nil || string(old) != "c" || len(then) != 2 || then[1] != nil {
		t.Fatalf("Commit in a full store = %q, %v, %v; want the swap and the replacing write made", old, then, err)
	}
	wantFull("Commit's Then write", then[0])

	// Existing keys still work.
	if err := s.Put(ctx, "b", []byte("b2"), time.Hour); err != nil {
		t.Fatalf("Put replacing a present key in a full store: %v", err)
	}
	if _, err := s.Swap(ctx, "c", []byte("c2"), time.Hour); err != nil {
		t.Fatalf("Swap in a full store: %v", err)
	}
	if err := s.PutIfAbsent(ctx, "a", []byte("x"), time.Hour); !errors.Is(err, store.ErrExists) {
		t.Fatalf("PutIfAbsent of a present key in a full store: %v, want ErrExists", err)
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatalf("Delete in a full store: %v", err)
	}
	if err := s.Put(ctx, "d", []byte("d"), time.Hour); err != nil {
		t.Fatalf("Put of a new key after a Delete made room: %v", err)
	}
	if err := s.Delete(ctx, "b"); err != nil {
		t.Fatalf("Delete in a full store: %v", err)
	}
	if err := s.PutIfAbsent(ctx, "e", []byte("e"), time.Hour); err != nil {
		t.Fatalf("PutIfAbsent of a new key after a Delete made room: %v", err)
	}
	if got, want := s.Len(), 3; got != want {
		t.Fatalf("Len() = %d, want %d", got, want)
	}
}

func TestFullDropsExpiredEntriesFirst(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clk := newClock()
	// Many shards and few entries: the expired entries mostly lie in
	// shards other than the new keys'.
	s := newStore(t, memory.Options{MaxEntries: 4, Shards: 64, JanitorInterval: -1, Now: clk.Now})
	for _, k := range []string{"old-1", "old-2", "old-3"} {
		if err := s.Put(ctx, k, []byte("v"), time.Second); err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
	}
	if err := s.Put(ctx, "live", []byte("v"), time.Hour); err != nil {
		t.Fatalf("Put(live): %v", err)
	}
	clk.Advance(2 * time.Second)
	for _, k := range []string{"new-1", "new-2", "new-3"} {
		if err := s.PutIfAbsent(ctx, k, []byte("v"), time.Hour); err != nil {
			t.Fatalf("PutIfAbsent(%q) with expired entries to drop: %v", k, err)
		}
	}
	if err := s.Put(ctx, "new-4", []byte("v"), time.Hour); !errors.Is(err, store.ErrFull) {
		t.Fatalf("Put of a 5th live entry: %v, want ErrFull", err)
	}
	if _, err := s.Get(ctx, "live"); err != nil {
		t.Fatalf("the live entry was evicted: Get: %v", err)
	}
}

func TestJanitorSweeps(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clk := newClock()
	s := newStore(t, memory.Options{JanitorInterval: 5 * time.Millisecond, Now: clk.Now})
	for i := range 100 {
		if err := s.Put(ctx, strings.Repeat("k", i+1), []byte("v"), time.Second); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	if err := s.Put(ctx, "live", []byte("v"), time.Hour); err != nil {
		t.Fatalf("Put: %v", err)
	}
	clk.Advance(2 * time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for s.Len() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("Len() = %d 10s after 100 entries expired, want 1: the janitor did not sweep them", s.Len())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCloseStopsJanitor(t *testing.T) {
	t.Parallel()
	s := memory.New(memory.Options{JanitorInterval: time.Millisecond})
	done := make(chan struct{})
	go func() {
		s.Close() // returns once the janitor has stopped
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10s: the janitor did not stop")
	}
	if got := s.Len(); got != 0 {
		t.Fatalf("Len() = %d after Close, want 0", got)
	}
}

func TestValueLimit(t *testing.T) {
	t.Parallel()
	s := newStore(t, memory.Options{MaxValueLen: 10})
	if err := s.Put(t.Context(), "k", make([]byte, 10), time.Minute); err != nil {
		t.Fatalf("Put of MaxValueLen bytes: %v", err)
	}
	if err := s.Put(t.Context(), "k", make([]byte, 11), time.Minute); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Put of MaxValueLen+1 bytes: %v, want ErrInvalid", err)
	}
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url     string
		want    memory.Options
		wantErr string
	}{
		{url: "memory://", want: memory.Options{}},
		{url: "memory:", want: memory.Options{}},
		{url: "memory://?max_entries=10&shards=3&janitor=1s", want: memory.Options{MaxEntries: 10, Shards: 3, JanitorInterval: time.Second}},
		{url: "memory://?janitor=0", want: memory.Options{JanitorInterval: -1}},
		{url: "memory://?max_entries=0", wantErr: "max_entries"},
		{url: "memory://?max_entries=-5", wantErr: "max_entries"},
		{url: "memory://?max_entries=lots", wantErr: "max_entries"},
		{url: "memory://?shards=0", wantErr: "shards"},
		{url: "memory://?shards=1000000", wantErr: "shards"},
		{url: "memory://?janitor=-1s", wantErr: "janitor"},
		{url: "memory://?janitor=often", wantErr: "janitor"},
		{url: "memory://?maxentries=10", wantErr: `unknown parameter "maxentries"`},
		{url: "memory://somehost", wantErr: "no host"},
		{url: "memory:///path", wantErr: "no host"},
		{url: "redis://x", wantErr: "not memory"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			got, err := memory.ParseURL(u)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseURL(%q) error = %v, want one containing %q", tc.url, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURL(%q): %v", tc.url, err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b func() time.Time) bool { return a == nil && b == nil })); diff != "" {
				t.Fatalf("ParseURL(%q) mismatch (-want +got):\n%s", tc.url, diff)
			}
		})
	}
}

func TestOpenDescribes(t *testing.T) {
	t.Parallel()
	tests := []struct{ url, want string }{
		{"memory://", "memory://?max_entries=1000000&shards=64&janitor=30s"},
		{"memory://?shards=3&max_entries=5&janitor=0", "memory://?max_entries=5&shards=4&janitor=0"},
	}
	for _, tc := range tests {
		s, err := store.Open(context.Background(), tc.url, nil)
		if err != nil {
			t.Fatalf("store.Open(%q): %v", tc.url, err)
		}
		d := s.(store.Describer)
		if d.Kind() != "memory" || d.Location() != tc.want {
			t.Errorf("store.Open(%q): Kind() = %q, Location() = %q; want memory, %q", tc.url, d.Kind(), d.Location(), tc.want)
		}
		if d.Shared() || store.Shared(s) {
			t.Errorf("store.Open(%q): Shared() = %v, store.Shared = %v; want false", tc.url, d.Shared(), store.Shared(s))
		}
		s.Close()
	}
	if _, err := store.Open(context.Background(), "memory://?shards=x", nil); err == nil || !strings.Contains(err.Error(), "shards") {
		t.Errorf("store.Open with a bad parameter: %v, want an error naming it", err)
	}
}

// TestCountStaysExact checks the entry count under concurrent writes,
// swaps and deletes against a small cap: it never passes the cap,
// and in the end it equals the entries that are there.
func TestCountStaysExact(t *testing.T) {
	t.Parallel()
	const maxEntries, nkeys, workers, ops = 100, 300, 8, 2000
	ctx := t.Context()
	s := newStore(t, memory.Options{MaxEntries: maxEntries, Shards: 8, JanitorInterval: -1})
	key := func(i int) string { return "k" + strconv.Itoa(i%nkeys) }
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range ops {
				k := key(i*7 + w*13)
				var err error
				switch (i + w) % 5 {
				case 0:
					err = s.Put(ctx, k, []byte("v"), time.Hour)
				case 1:
					err = s.PutIfAbsent(ctx, k, []byte("v"), time.Hour)
				case 2:
					errs := s.PutBatch(ctx, []store.Write{{Key: k, Value: []byte("b"), TTL: time.Hour, IfAbsent: true}})
					err = errs[0]
				case 3:
					_, err = s.Swap(ctx, k, []byte("w"), time.Hour)
				case 4:
					err = s.Delete(ctx, k)
				}
				if err != nil && !errors.Is(err, store.ErrFull) && !errors.Is(err, store.ErrExists) && !errors.Is(err, store.ErrNotFound) {
					errs <- err
					return
				}
				if n := s.Len(); n > maxEntries {
					errs <- fmt.Errorf("Len() = %d, above max_entries %d", n, maxEntries)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	present := 0
	for i := range nkeys {
		if _, err := s.Get(ctx, key(i)); err == nil {
			present++
		}
	}
	if s.Len() != present {
		t.Fatalf("Len() = %d, but %d keys are present", s.Len(), present)
	}
}
