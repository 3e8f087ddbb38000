// Package storetest is the conformance suite of store.Store. A backend is
// done when Run passes against it; its test file is a few lines:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			return memory.New(memory.Options{})
//		})
//	}
//
// The suite checks the contract of package store, and nothing that is one
// backend's choice: round trips and replacement, TTL expiry, the atomic
// operations under contention (PutIfAbsent, Swap, Commit), PutBatch,
// GetMany, the classification of errors (not found, exists, conflict,
// invalid, cancelled, closed), large values, keys with unusual bytes, and
// that returned slices belong to the caller. The optional operations
// (Commit, GetMany) are checked through the store's own implementation if
// it has one and through the package helpers' fallback over the plain
// methods; the Notifier tests (delivery, order, concurrent publishers, a
// consumer that falls behind, Close, invalid channels) run if the store
// is a Notifier.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/samlha/samlha/store"
)

// Timings of the suite. TTLs are short so that expiry tests finish
// quickly; waits are on conditions, bounded by waitFor.
const (
	shortTTL = 100 * time.Millisecond
	longTTL  = 10 * time.Minute
	waitFor  = 10 * time.Second
	pollStep = 5 * time.Millisecond
	// loadBudget bounds every concurrent load loop in time (their counts
	// are bounded by construction).
	loadBudget = 60 * time.Second
	// expiryTolerance allows for a backend clock that counts in
	// milliseconds (Redis) when checking that nothing expires early.
	expiryTolerance = 5 * time.Millisecond
)

// Run runs the conformance suite. open is called once per subtest, from the
// subtest, and must return a new open store; Run closes it when the subtest
// ends (Close is idempotent, so open may register its own cleanup too).
// Stores from different calls may share their data, as clients of one Redis
// server do: every subtest uses keys of its own under a random prefix.
// Subtests run in parallel.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store, k keys)
	}{
		{"PutGet", testPutGet},
		{"EmptyValue", testEmptyValue},
		{"Replace", testReplace},
		{"Delete", testDelete},
		{"TTLExpiry", testTTLExpiry},
		{"TTLReplacedByPut", testTTLReplacedByPut},
		{"SwapSetsTTL", testSwapSetsTTL},
		{"ExpiredKeyIsAbsent", testExpiredKeyIsAbsent},
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfAbsentRace", testPutIfAbsentRace},
		{"Swap", testSwap},
		{"SwapAbsentWritesNothing", testSwapAbsent},
		{"SwapExactlyOnce", testSwapExactlyOnce},
		{"PutBatch", testPutBatch},
		{"Commit", testCommit},
		{"CommitGuardFailsWritesNothing", testCommitGuardFails},
		{"CommitAbsentWritesNothing", testCommitAbsent},
		{"CommitThenIfAbsentExists", testCommitThenExists},
		{"CommitSetsTTLs", testCommitTTL},
		{"CommitInvalidWritesNothing", testCommitInvalid},
		{"CommitExactlyOnce", testCommitExactlyOnce},
		{"GetMany", testGetMany},
		{"Notify", testNotify},
		{"NotifyConcurrent", testNotifyConcurrent},
		{"NotifySlowConsumer", testNotifySlowConsumer},
		{"NotifyClose", testNotifyClose},
		{"NotifyInvalid", testNotifyInvalid},
		{"NotFoundIsNotUnavailable", testNotFoundIsNotUnavailable},
		{"CancelledContext", testCancelledContext},
		{"ExpiredContext", testExpiredContext},
		{"InvalidArguments", testInvalidArguments},
		{"LargeValue", testLargeValue},
		{"UnusualKeys", testUnusualKeys},
		{"CallerOwnsSlices", testCallerOwnsSlices},
		{"Ping", testPing},
		{"Describe", testDescribe},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			if s == nil {
				t.Fatal("open returned a nil store")
			}
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s, newKeys(t))
		})
	}
}

// keys makes keys unique to one subtest.
type keys struct{ prefix string }

func newKeys(t *testing.T) keys {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random key prefix: %v", err)
	}
	return keys{prefix: "storetest-" + hex.EncodeToString(b) + ":"}
}

func (k keys) key(name string) string { return k.prefix + name }

// mustPut stores value under key for ttl, failing the test on error.
func mustPut(t *testing.T, s store.Store, key, value string, ttl time.Duration) {
	t.Helper()
	if err := s.Put(t.Context(), key, []byte(value), ttl); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

// wantValue checks that key holds want.
func wantValue(t *testing.T, s store.Store, key, want string) {
	t.Helper()
	got, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v, want value %q", key, err, want)
	}
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Fatalf("Get(%q) value mismatch (-want +got):\n%s", key, diff)
	}
}

// wantAbsent checks that key holds no value.
func wantAbsent(t *testing.T, s store.Store, key string) {
	t.Helper()
	got, err := s.Get(t.Context(), key)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want an error matching ErrNotFound", key, got, err)
	}
}

// waitAbsent waits until Get reports key absent, and returns how long after
// since that took. It fails if Get fails otherwise, or if waitFor passes.
func waitAbsent(t *testing.T, s store.Store, key string, since time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		_, err := s.Get(t.Context(), key)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return time.Since(since)
		case err != nil:
			t.Fatalf("Get(%q) while waiting for expiry: %v", key, err)
		case time.Now().After(deadline):
			t.Fatalf("Get(%q) still finds the value %v after it was written with a TTL of %v", key, time.Since(since), shortTTL)
		}
		time.Sleep(pollStep)
	}
}

func testPutGet(t *testing.T, s store.Store, k keys) {
	key := k.key("a")
	mustPut(t, s, key, "value-a", longTTL)
	wantValue(t, s, key, "value-a")
	wantAbsent(t, s, k.key("never-written"))
}

func testEmptyValue(t *testing.T, s store.Store, k keys) {
	key := k.key("empty")
	if err := s.Put(t.Context(), key, nil, longTTL); err != nil {
		t.Fatalf("Put(nil value): %v", err)
	}
	got, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get of an empty value: %v; want an empty value and no error", err)
	}
	if len(got) != 0 {
		t.Fatalf("Get of an empty value = %q, want it empty", got)
	}
	got, err = s.Swap(t.Context(), key, []byte("full"), longTTL)
	if err != nil || len(got) != 0 {
		t.Fatalf("Swap of an empty value = %q, %v; want an empty value and no error", got, err)
	}
	if got, err := s.Swap(t.Context(), key, nil, longTTL); err != nil || string(got) != "full" {
		t.Fatalf("Swap of an empty value in = %q, %v; want %q and no error", got, err, "full")
	}
	wantValue(t, s, key, "")
}

func testReplace(t *testing.T, s store.Store, k keys) {
	key := k.key("r")
	mustPut(t, s, key, "first", longTTL)
	mustPut(t, s, key, "second, longer than the first", longTTL)
	wantValue(t, s, key, "second, longer than the first")
	mustPut(t, s, key, "3", longTTL)
	wantValue(t, s, key, "3")
}

func testDelete(t *testing.T, s store.Store, k keys) {
	key := k.key("d")
	mustPut(t, s, key, "v", longTTL)
	if err := s.Delete(t.Context(), key); err != nil {
		t.Fatalf("Delete of a present key: %v", err)
	}
	wantAbsent(t, s, key)
	if err := s.Delete(t.Context(), key); err != nil {
		t.Fatalf("Delete of an absent key: %v, want nil", err)
	}
}

func testTTLExpiry(t *testing.T, s store.Store, k keys) {
	key := k.key("ttl")
	start := time.Now()
	mustPut(t, s, key, "short-lived", shortTTL)
	got, err := s.Get(t.Context(), key)
	switch {
	case errors.Is(err, store.ErrNotFound) && time.Since(start) < shortTTL-expiryTolerance:
		t.Fatalf("Get right after Put with TTL %v: not found after only %v", shortTTL, time.Since(start))
	case err == nil && string(got) != "short-lived":
		t.Fatalf("Get right after Put = %q, want %q", got, "short-lived")
	case err != nil && !errors.Is(err, store.ErrNotFound):
		t.Fatalf("Get right after Put: %v", err)
	}
	if took := waitAbsent(t, s, key, start); took < shortTTL-expiryTolerance {
		t.Fatalf("value written with TTL %v was gone after %v", shortTTL, took)
	}
}

func testTTLReplacedByPut(t *testing.T, s store.Store, k keys) {
	// b is written first, then the marker; both with shortTTL. b is then
	// replaced with a long TTL. Once the marker has expired, b's first TTL
	// has run out too, so b is there only if Put replaced its TTL.
	b, marker := k.key("b"), k.key("marker")
	mustPut(t, s, b, "first", shortTTL)
	start := time.Now()
	mustPut(t, s, marker, "m", shortTTL)
	mustPut(t, s, b, "second", longTTL)
	waitAbsent(t, s, marker, start)
	wantValue(t, s, b, "second")
}

func testSwapSetsTTL(t *testing.T, s store.Store, k keys) {
	key := k.key("swap-ttl")
	mustPut(t, s, key, "long-lived", longTTL)
	start := time.Now()
	if _, err := s.Swap(t.Context(), key, []byte("short-lived"), shortTTL); err != nil {
		t.Fatalf("Swap: %v", err)
	}
	if took := waitAbsent(t, s, key, start); took < shortTTL-expiryTolerance {
		t.Fatalf("value swapped in with TTL %v was gone after %v", shortTTL, took)
	}
}

func testExpiredKeyIsAbsent(t *testing.T, s store.Store, k keys) {
	// Once expired, a key is absent for every operation.
	ctx := t.Context()
	key := k.key("expired")
	start := time.Now()
	mustPut(t, s, key, "old", shortTTL)
	waitAbsent(t, s, key, start)
	if _, err := s.Swap(ctx, key, []byte("new"), longTTL); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Swap of an expired key: %v, want ErrNotFound", err)
	}
	wantAbsent(t, s, key)
	if err := s.PutIfAbsent(ctx, key, []byte("new"), longTTL); err != nil {
		t.Fatalf("PutIfAbsent over an expired key: %v, want success", err)
	}
	wantValue(t, s, key, "new")
}

func testPutIfAbsent(t *testing.T, s store.Store, k keys) {
	ctx := t.Context()
	key := k.key("pia")
	if err := s.PutIfAbsent(ctx, key, []byte("first"), longTTL); err != nil {
		t.Fatalf("PutIfAbsent of an absent key: %v", err)
	}
	err := s.PutIfAbsent(ctx, key, []byte("second"), longTTL)
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("PutIfAbsent of a present key: %v, want ErrExists", err)
	}
	if store.IsUnavailable(err) || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("PutIfAbsent of a present key: %v also matches ErrUnavailable or ErrNotFound", err)
	}
	wantValue(t, s, key, "first")
}

// loadContext returns a context that bounds a load loop in time.
func loadContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), loadBudget)
	t.Cleanup(cancel)
	return ctx
}

func testPutIfAbsentRace(t *testing.T, s store.Store, k keys) {
	const workers, nkeys = 32, 16
	ctx := loadContext(t)
	type result struct {
		worker int
		err    error
	}
	results := make([][]result, nkeys)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range nkeys {
				err := s.PutIfAbsent(ctx, k.key(fmt.Sprint(i)), []byte(fmt.Sprintf("worker-%d", w)), longTTL)
				mu.Lock()
				results[i] = append(results[i], result{w, err})
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	for i, rs := range results {
		winner := -1
		for _, r := range rs {
			switch {
			case r.err == nil && winner >= 0:
				t.Fatalf("key %d: PutIfAbsent succeeded for both worker %d and worker %d", i, winner, r.worker)
			case r.err == nil:
				winner = r.worker
			case !errors.Is(r.err, store.ErrExists):
				t.Fatalf("key %d: PutIfAbsent of worker %d: %v, want nil or ErrExists", i, r.worker, r.err)
			}
		}
		if winner < 0 {
			t.Fatalf("key %d: no PutIfAbsent of %d succeeded", i, workers)
		}
		wantValue(t, s, k.key(fmt.Sprint(i)), fmt.Sprintf("worker-%d", winner))
	}
}

// perm returns a random permutation of 0..n-1.
func perm(t *testing.T, n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			t.Fatalf("random permutation: %v", err)
		}
		p[i], p[j.Int64()] = p[j.Int64()], p[i]
	}
	return p
}

func testSwap(t *testing.T, s store.Store, k keys) {
	ctx := t.Context()
	key := k.key("swap")
	mustPut(t, s, key, "original", longTTL)
	old, err := s.Swap(ctx, key, []byte("tombstone"), longTTL)
	if err != nil {
		t.Fatalf("Swap of a present key: %v", err)
	}
	if diff := cmp.Diff("original", string(old)); diff != "" {
		t.Fatalf("first Swap returned the wrong value (-want +got):\n%s", diff)
	}
	old, err = s.Swap(ctx, key, []byte("tombstone-2"), longTTL)
	if err != nil {
		t.Fatalf("second Swap: %v", err)
	}
	if diff := cmp.Diff("tombstone", string(old)); diff != "" {
		t.Fatalf("second Swap returned the wrong value (-want +got):\n%s", diff)
	}
	wantValue(t, s, key, "tombstone-2")
}

func testSwapAbsent(t *testing.T, s store.Store, k keys) {
	key := k.key("absent")
	got, err := s.Swap(t.Context(), key, []byte("should not be written"), longTTL)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Swap of an absent key = %q, %v; want ErrNotFound", got, err)
	}
	wantAbsent(t, s, key)
}

func testSwapExactlyOnce(t *testing.T, s store.Store, k keys) {
	// Every value written (the original and each worker's) must come back
	// exactly once: from one Swap, or, for the last one, from Get. Exactly
	// one Swap gets the original: this is how the SP consumes a tracked
	// login, so two submissions of one response cannot both finish it.
	const workers, nkeys = 32, 40
	ctx := loadContext(t)
	for i := range nkeys {
		mustPut(t, s, k.key(fmt.Sprint(i)), "original", longTTL)
	}
	// Half the workers go through the keys in one order, so that they
	// collide on each key together; the others in random orders.
	orders := make([][]int, workers)
	for w := range orders {
		if w%2 == 0 {
			orders[w] = make([]int, nkeys)
			for i := range orders[w] {
				orders[w][i] = i
			}
		} else {
			orders[w] = perm(t, nkeys)
		}
	}
	returned := make([][]string, nkeys)
	var (
		mu      sync.Mutex
		failure error
		wg      sync.WaitGroup
	)
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-start
			for _, i := range orders[w] {
				old, err := s.Swap(ctx, k.key(fmt.Sprint(i)), []byte(fmt.Sprintf("worker-%d", w)), longTTL)
				mu.Lock()
				if err != nil && failure == nil {
					failure = fmt.Errorf("Swap of present key %d by worker %d: %w", i, w, err)
				}
				returned[i] = append(returned[i], string(old))
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	if failure != nil {
		t.Fatal(failure)
	}
	want := map[string]int{"original": 1}
	for w := range workers {
		want[fmt.Sprintf("worker-%d", w)] = 1
	}
	for i := range nkeys {
		final, err := s.Get(t.Context(), k.key(fmt.Sprint(i)))
		if err != nil {
			t.Fatalf("Get of key %d after the swaps: %v", i, err)
		}
		got := map[string]int{string(final): 1}
		for _, v := range returned[i] {
			got[v]++
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("key %d: values returned by Swap plus the final value, counted (-want +got):\n%s", i, diff)
		}
	}
}

func testPutBatch(t *testing.T, s store.Store, k keys) {
	ctx := t.Context()
	a, b, c, existing := k.key("a"), k.key("b"), k.key("c"), k.key("existing")
	mustPut(t, s, existing, "old", longTTL)
	batch := []struct {
		w    store.Write
		want error
	}{
		{store.Write{Key: a, Value: []byte("va"), TTL: longTTL}, nil},
		{store.Write{Key: existing, Value: []byte("ignored"), TTL: longTTL, IfAbsent: true}, store.ErrExists},
		{store.Write{Key: b, Value: []byte("vb"), TTL: longTTL, IfAbsent: true}, nil},
		{store.Write{Key: b, Value: []byte("vb-2"), TTL: longTTL, IfAbsent: true}, store.ErrExists},
		{store.Write{Key: "", Value: []byte("x"), TTL: longTTL}, store.ErrInvalid},
		{store.Write{Key: c, Value: []byte("vc"), TTL: 0}, store.ErrInvalid},
		{store.Write{Key: existing, Value: []byte("replaced"), TTL: longTTL}, nil},
	}
	writes := make([]store.Write, len(batch))
	for i, x := range batch {
		writes[i] = x.w
	}
	errs := s.PutBatch(ctx, writes)
	if len(errs) != len(writes) {
		t.Fatalf("PutBatch of %d writes returned %d results", len(writes), len(errs))
	}
	for i, x := range batch {
		if !matches(errs[i], x.want) {
			t.Errorf("PutBatch result %d (key %q, IfAbsent %v): %v, want %v", i, x.w.Key, x.w.IfAbsent, errs[i], x.want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	wantValue(t, s, a, "va")
	wantValue(t, s, b, "vb")
	wantAbsent(t, s, c)
	wantValue(t, s, existing, "replaced")

	if errs := s.PutBatch(ctx, nil); len(errs) != 0 {
		t.Fatalf("PutBatch(nil) = %v, want no results", errs)
	}
}

// matches reports whether err is nil when want is, or matches want.
func matches(err, want error) bool {
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}

func testNotFoundIsNotUnavailable(t *testing.T, s store.Store, k keys) {
	ctx := t.Context()
	key := k.key("nothing")
	_, getErr := s.Get(ctx, key)
	_, swapErr := s.Swap(ctx, key, []byte("v"), longTTL)
	for name, err := range map[string]error{"Get": getErr, "Swap": swapErr} {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s of an absent key: %v, want ErrNotFound", name, err)
		}
		if store.IsUnavailable(err) || errors.Is(err, store.ErrClosed) {
			t.Errorf("%s of an absent key: %v matches ErrUnavailable", name, err)
		}
	}
	if errors.Is(store.ErrNotFound, store.ErrUnavailable) || errors.Is(store.ErrUnavailable, store.ErrNotFound) {
		t.Error("ErrNotFound and ErrUnavailable match each other")
	}
	unavailable := store.Unavailable("get", errors.New("connection refused"))
	if errors.Is(unavailable, store.ErrNotFound) {
		t.Errorf("store.Unavailable(...) = %v matches ErrNotFound", unavailable)
	}
}

// call is one store method, called with ctx, returning its error.
type call struct {
	name string
	do   func(ctx context.Context) error
}

// calls returns one call of every method that uses present, a key holding
// a value, and absent, a key holding none.
func calls(s store.Store, present, absent string) []call {
	v := []byte("v")
	return []call{
		{"Put", func(ctx context.Context) error { return s.Put(ctx, absent, v, longTTL) }},
		{"PutIfAbsent", func(ctx context.Context) error { return s.PutIfAbsent(ctx, absent, v, longTTL) }},
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, present); return err }},
		{"Swap", func(ctx context.Context) error { _, err := s.Swap(ctx, present, v, longTTL); return err }},
		{"Delete", func(ctx context.Context) error { return s.Delete(ctx, present) }},
		{"PutBatch", func(ctx context.Context) error {
			errs := s.PutBatch(ctx, []store.Write{{Key: absent, Value: v, TTL: longTTL}, {Key: absent, Value: v, TTL: longTTL, IfAbsent: true}})
			if len(errs) != 2 {
				return fmt.Errorf("PutBatch of 2 writes returned %d results", len(errs))
			}
			if (errs[0] == nil) != (errs[1] == nil) || (errs[0] != nil && errs[0].Error() != errs[1].Error()) {
				return fmt.Errorf("PutBatch results differ: %v and %v", errs[0], errs[1])
			}
			return errs[0]
		}},
		{"Ping", func(ctx context.Context) error { return s.Ping(ctx) }},
		{"Commit", func(ctx context.Context) error {
			_, _, err := store.CommitTo(ctx, s, store.Commit{Key: present, Value: v, TTL: longTTL,
				Then: []store.Write{{Key: absent, Value: v, TTL: longTTL}}})
			return err
		}},
		{"GetMany", func(ctx context.Context) error {
			_, err := store.GetMany(ctx, s, []string{present, absent})
			return err
		}},
	}
}

func testCancelledContext(t *testing.T, s store.Store, k keys) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	testDoneContext(t, s, k, ctx, context.Canceled)
}

func testExpiredContext(t *testing.T, s store.Store, k keys) {
	ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	testDoneContext(t, s, k, ctx, context.DeadlineExceeded)
}

func testDoneContext(t *testing.T, s store.Store, k keys, ctx context.Context, want error) {
	present, absent := k.key("present"), k.key("absent")
	mustPut(t, s, present, "kept", longTTL)
	for _, c := range append(calls(s, present, absent), notifyCalls(s, k.prefix+"ch")...) {
		err := c.do(ctx)
		if !errors.Is(err, want) {
			t.Errorf("%s with a done context: %v, want an error matching %v", c.name, err, want)
		}
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) {
			t.Errorf("%s with a done context: %v matches ErrNotFound or ErrExists", c.name, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// Nothing was done.
	wantValue(t, s, present, "kept")
	wantAbsent(t, s, absent)
}

func testClosed(t *testing.T, s store.Store, k keys) {
	present, absent := k.key("present"), k.key("absent")
	mustPut(t, s, present, "v", longTTL)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, c := range append(calls(s, present, absent), notifyCalls(s, k.prefix+"ch")...) {
		err := c.do(t.Context())
		if !errors.Is(err, store.ErrClosed) || !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s after Close: %v, want an error matching ErrClosed and ErrUnavailable", c.name, err)
		}
		if errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s after Close: %v matches ErrNotFound", c.name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v, want nil (Close is idempotent)", err)
	}
}

func testInvalidArguments(t *testing.T, s store.Store, k keys) {
	present := k.key("present")
	mustPut(t, s, present, "kept", longTTL)
	long := strings.Repeat("k", store.MaxKeyLen+1)
	v := []byte("v")
	tests := []call{
		{"Put empty key", func(ctx context.Context) error { return s.Put(ctx, "", v, longTTL) }},
		{"Put long key", func(ctx context.Context) error { return s.Put(ctx, long, v, longTTL) }},
		{"Put zero TTL", func(ctx context.Context) error { return s.Put(ctx, present, v, 0) }},
		{"Put negative TTL", func(ctx context.Context) error { return s.Put(ctx, present, v, -time.Second) }},
		{"PutIfAbsent empty key", func(ctx context.Context) error { return s.PutIfAbsent(ctx, "", v, longTTL) }},
		{"PutIfAbsent zero TTL", func(ctx context.Context) error { return s.PutIfAbsent(ctx, k.key("new"), v, 0) }},
		{"Get empty key", func(ctx context.Context) error { _, err := s.Get(ctx, ""); return err }},
		{"Get long key", func(ctx context.Context) error { _, err := s.Get(ctx, long); return err }},
		{"Swap empty key", func(ctx context.Context) error { _, err := s.Swap(ctx, "", v, longTTL); return err }},
		{"Swap long key", func(ctx context.Context) error { _, err := s.Swap(ctx, long, v, longTTL); return err }},
		{"Swap negative TTL", func(ctx context.Context) error { _, err := s.Swap(ctx, present, v, -time.Second); return err }},
		{"Swap zero TTL", func(ctx context.Context) error { _, err := s.Swap(ctx, present, v, 0); return err }},
		{"Delete empty key", func(ctx context.Context) error { return s.Delete(ctx, "") }},
		{"Delete long key", func(ctx context.Context) error { return s.Delete(ctx, long) }},
		{"PutBatch empty key", func(ctx context.Context) error {
			return s.PutBatch(ctx, []store.Write{{Key: "", Value: v, TTL: longTTL}})[0]
		}},
		{"PutBatch negative TTL", func(ctx context.Context) error {
			return s.PutBatch(ctx, []store.Write{{Key: present, Value: v, TTL: -1}})[0]
		}},
	}
	for _, c := range tests {
		err := c.do(t.Context())
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", c.name, err)
		}
		if store.IsUnavailable(err) || errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: %v also matches ErrUnavailable or ErrNotFound", c.name, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	wantValue(t, s, present, "kept")
	wantAbsent(t, s, k.key("new"))
}

func testLargeValue(t *testing.T, s store.Store, k keys) {
	ctx := t.Context()
	key := k.key("large")
	big1, big2 := make([]byte, store.MaxValueLen), make([]byte, store.MaxValueLen)
	if _, err := rand.Read(big1); err != nil {
		t.Fatal(err)
	}
	if _, err := rand.Read(big2); err != nil {
		t.Fatal(err)
	}
	same := func(op string, got, want []byte) {
		t.Helper()
		if !bytes.Equal(got, want) {
			t.Fatalf("%s returned %d bytes that differ from the %d-byte value written", op, len(got), len(want))
		}
	}
	if err := s.Put(ctx, key, big1, longTTL); err != nil {
		t.Fatalf("Put of %d bytes: %v", len(big1), err)
	}
	got, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get of %d bytes: %v", len(big1), err)
	}
	same("Get", got, big1)
	got, err = s.Swap(ctx, key, big2, longTTL)
	if err != nil {
		t.Fatalf("Swap of %d bytes: %v", len(big2), err)
	}
	same("Swap", got, big1)
	got, err = s.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get of %d bytes after Swap: %v", len(big2), err)
	}
	same("Get after Swap", got, big2)
	if err := s.PutIfAbsent(ctx, key, big1, longTTL); !errors.Is(err, store.ErrExists) {
		t.Fatalf("PutIfAbsent of %d bytes over a present key: %v, want ErrExists", len(big1), err)
	}
	if errs := s.PutBatch(ctx, []store.Write{{Key: key, Value: big1, TTL: longTTL}}); errs[0] != nil {
		t.Fatalf("PutBatch of %d bytes: %v", len(big1), errs[0])
	}
	got, err = s.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get of %d bytes after PutBatch: %v", len(big1), err)
	}
	same("Get after PutBatch", got, big1)
}

func testUnusualKeys(t *testing.T, s store.Store, k keys) {
	ctx := t.Context()
	names := []string{
		"nul",
		"nul\x00byte",
		"\x00",
		"new\nline",
		"crlf\r\n",
		"{tag}",
		"}{",
		"{}",
		"{tag}other",
		"with spaces in it",
		" ",
		"\xff\xfe\xfd not UTF-8",
		"ключ 鍵 🔑",
		"*?[glob]",
		`"quoted" 'single' \back`,
		"%s%d%%",
	}
	keys := make([]string, 0, len(names)+1)
	for _, n := range names {
		keys = append(keys, k.key(n))
	}
	// The longest key allowed, exactly.
	keys = append(keys, k.prefix+strings.Repeat("x", store.MaxKeyLen-len(k.prefix)))

	// Each key holds its own value: none is truncated or folded into another.
	for _, key := range keys {
		mustPut(t, s, key, "value of "+key, longTTL)
	}
	for _, key := range keys {
		wantValue(t, s, key, "value of "+key)
	}
	for _, key := range keys {
		got, err := s.Swap(ctx, key, []byte("swapped"), longTTL)
		if err != nil || string(got) != "value of "+key {
			t.Fatalf("Swap(%q) = %q, %v; want its value", key, got, err)
		}
		wantValue(t, s, key, "swapped")
		if err := s.Delete(ctx, key); err != nil {
			t.Fatalf("Delete(%q): %v", key, err)
		}
		wantAbsent(t, s, key)
		if err := s.PutIfAbsent(ctx, key, []byte("again"), longTTL); err != nil {
			t.Fatalf("PutIfAbsent(%q) after Delete: %v", key, err)
		}
		wantValue(t, s, key, "again")
	}
}

func testCallerOwnsSlices(t *testing.T, s store.Store, k keys) {
	ctx := t.Context()
	key := k.key("owned")
	in := []byte("original")
	if err := s.Put(ctx, key, in, longTTL); err != nil {
		t.Fatalf("Put: %v", err)
	}
	in[0] = 'X' // the store must have copied it
	wantValue(t, s, key, "original")

	got, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	got[0] = 'Y'
	wantValue(t, s, key, "original")

	in = []byte("swapped")
	old, err := s.Swap(ctx, key, in, longTTL)
	if err != nil {
		t.Fatalf("Swap: %v", err)
	}
	old[0] = 'Z'
	in[0] = 'W'
	wantValue(t, s, key, "swapped")

	batch := []byte("batched")
	if errs := s.PutBatch(ctx, []store.Write{{Key: key, Value: batch, TTL: longTTL}}); errs[0] != nil {
		t.Fatalf("PutBatch: %v", errs[0])
	}
	batch[0] = 'V'
	wantValue(t, s, key, "batched")
}

func testPing(t *testing.T, s store.Store, _ keys) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testDescribe(t *testing.T, s store.Store, _ keys) {
	d, ok := s.(store.Describer)
	if !ok {
		t.Skipf("%T does not implement store.Describer", s)
	}
	if d.Kind() == "" || d.Location() == "" {
		t.Fatalf("Kind() = %q, Location() = %q; want both non-empty", d.Kind(), d.Location())
	}
}
