package redis_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/redis"
	"github.com/samlha/samlha/store/redis/redistest"
)

// TestLostReplyBehindSentinelIsOwnWrite: behind Sentinels, a command that
// must not run twice and whose reply is lost (the connection cut after the
// server ran it) is sent again, and the resend recognises its own earlier
// write: PutIfAbsent succeeds (not ErrExists), Swap returns the value it
// replaced (not its own), Commit returns the swapped value and its Then
// writes as made (not ErrNotFound, ErrConflict or ErrExists), a batch's
// IfAbsent write succeeds. Without the per-call record each of these
// would report its own effect as another caller's. (On a standalone
// server such a call fails as unavailable: TestLostReplyIsNotRetried.)
func TestLostReplyBehindSentinelIsOwnWrite(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, masterName)
	proxy := redistest.StartProxy(t, master.Addr())
	st, err := redis.Open(ctx, with(sentinel.URL(), "timeout=2s&pool_size=1&verify=false"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	redis.DialVia(st, func(string) string { return proxy.Addr() })
	raw := master.Client()

	// The first command asks the Sentinel, which replaces the store's
	// client with one for the master it names; the second opens that
	// client's pooled connection (HELLO and all), so the reply dropped
	// next is the command's own.
	for range 2 {
		if err := st.Put(ctx, "warm", []byte("v"), time.Minute); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	// The scripts are loaded (EVALSHA answered NOSCRIPT, then EVAL) before
	// a reply is dropped, so the reply dropped is the script's own.
	if _, err := st.Swap(ctx, "warm", []byte("v"), time.Minute); err != nil {
		t.Fatalf("Swap: %v", err)
	}
	if _, _, err := store.CommitTo(ctx, st, store.Commit{Key: "warm", Value: []byte("v"), TTL: time.Minute}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	drops := 0
	dropNext := func() {
		t.Helper()
		proxy.DropNextReply()
		drops++
	}
	checkDropped := func(what string) {
		t.Helper()
		if got := proxy.Dropped(); got != drops {
			t.Fatalf("%s: the proxy dropped %d replies, want %d", what, got, drops)
		}
	}

	dropNext()
	if err := st.PutIfAbsent(ctx, "replay", []byte("v"), time.Minute); err != nil {
		t.Errorf("PutIfAbsent whose reply was lost: %v, want nil (the resend is its own write)", err)
	}
	checkDropped("PutIfAbsent")
	if err := st.PutIfAbsent(ctx, "replay", []byte("v"), time.Minute); !errors.Is(err, store.ErrExists) {
		t.Errorf("a second PutIfAbsent of the same key: %v, want ErrExists (the record is the call's, not the key's)", err)
	}

	if err := raw.Set(ctx, "samlha:swapped", "original", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	dropNext()
	old, err := st.Swap(ctx, "swapped", []byte("new"), time.Minute)
	if err != nil || string(old) != "original" {
		t.Errorf("Swap whose reply was lost = %q, %v; want %q (a plain resend would return its own value)", old, err, "original")
	}
	checkDropped("Swap")
	if v, err := raw.Get(ctx, "samlha:swapped").Result(); err != nil || v != "new" {
		t.Errorf("GET after the Swap = %q, %v; want %q", v, err, "new")
	}

	if err := raw.Set(ctx, "samlha:req", "pending:1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	dropNext()
	old, then, err := store.CommitTo(ctx, st, store.Commit{Key: "req", Value: []byte("used:1"), TTL: time.Minute,
		IfPrefix: []byte("pending:"), Then: []store.Write{
			{Key: "session", Value: []byte("s"), TTL: time.Minute},
			{Key: "assertion", Value: []byte{1}, TTL: time.Minute, IfAbsent: true},
		}})
	if err != nil || string(old) != "pending:1" || len(then) != 2 || then[0] != nil || then[1] != nil {
		t.Errorf("Commit whose reply was lost = %q, %v, %v; want %q, [nil nil], nil (a plain resend: ErrConflict)", old, then, err, "pending:1")
	}
	checkDropped("Commit")

	// A pipeline may go on a connection of its own: open it first.
	if errs := st.PutBatch(ctx, []store.Write{{Key: "warm", Value: []byte("v"), TTL: time.Minute}}); errs[0] != nil {
		t.Fatalf("PutBatch: %v", errs[0])
	}
	dropNext()
	errs := st.PutBatch(ctx, []store.Write{
		{Key: "b1", Value: []byte("1"), TTL: time.Minute, IfAbsent: true},
		{Key: "b2", Value: []byte("2"), TTL: time.Minute},
	})
	if errs[0] != nil || errs[1] != nil {
		t.Errorf("PutBatch whose reply was lost = %v; want [nil nil]", errs)
	}
	checkDropped("PutBatch")

	retries := st.Retries()
	for _, op := range []string{"put-if-absent", "swap", "commit", "put-batch"} {
		if retries[op] == 0 {
			t.Errorf("Retries()[%q] = 0 after a resend; all: %v", op, retries)
		}
	}
}

// TestFailoverBudgetBoundsTheWait: behind a Sentinel that cannot promote
// anything (no replica), a killed master makes each call wait for its
// failover budget and then fail as unavailable: not before the budget
// (the wait is what carries a call through a real failover), not long
// after it (the bound holds), and never as a context error of the caller.
func TestFailoverBudgetBoundsTheWait(t *testing.T) {
	t.Parallel()
	const (
		timeout = 300 * time.Millisecond
		budget  = time.Second
	)
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, masterName)
	s := open(t, with(sentinel.URL(), fmt.Sprintf("timeout=%v&failover_budget=%v", timeout, budget)))
	if got := store.FailoverBudget(s); got != budget {
		t.Fatalf("store.FailoverBudget = %v, want %v", got, budget)
	}
	if err := s.Put(t.Context(), "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	master.Kill()
	for _, op := range []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"put", func(ctx context.Context) error { return s.Put(ctx, "k", []byte("v"), time.Minute) }},
		{"put-if-absent", func(ctx context.Context) error { return s.PutIfAbsent(ctx, "n", []byte("v"), time.Minute) }},
		{"swap", func(ctx context.Context) error { _, err := s.Swap(ctx, "k", []byte("w"), time.Minute); return err }},
		{"get", func(ctx context.Context) error { _, err := s.Get(ctx, "k"); return err }},
	} {
		start := time.Now()
		err := op.do(t.Context())
		took := time.Since(start)
		wantUnavailable(t, op.name+" with the master gone", err, took, timeout+budget+700*time.Millisecond)
		if took < budget {
			t.Errorf("%s with the master gone failed after %v, before its failover budget of %v", op.name, took, budget)
		}
	}
	// Ping is a readiness check: it says so within the timeout.
	start := time.Now()
	err := s.Ping(t.Context())
	wantUnavailable(t, "Ping with the master gone", err, time.Since(start), timeout+500*time.Millisecond)
}

// budgetOp is one operation of TestFailoverBudgetNoOperationLost.
type budgetOp struct {
	op         string
	began, end time.Time
	err        error
	wrong      string // a result other than the one its own write implies
}

// TestFailoverBudgetNoOperationLost kills the master under continuous load
// from three stores (replicas of the SP), each running chains of the
// login's operations (PutIfAbsent, Swap, Commit with an IfAbsent write,
// Get) on fresh keys. With the default budget every operation succeeds,
// or fails only once past its budget; none gets a result that contradicts
// its own earlier write (ErrExists, a Swap or Commit that does not see
// what the chain wrote), and operations begun after the promotion all
// succeed. With failover_budget=0 operations fail in the window: the
// budget is what carries them through.
func TestFailoverBudgetNoOperationLost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		budget       string
		wantFailures bool
	}{{"5s", false}, {"0s", true}} {
		t.Run("budget="+tc.budget, func(t *testing.T) {
			t.Parallel()
			budgetRun(t, tc.budget, tc.wantFailures)
		})
	}
}

func budgetRun(t *testing.T, budgetParam string, wantFailures bool) {
	const (
		instances = 3
		workers   = 3
		timeout   = 500 * time.Millisecond
	)
	budget, _ := time.ParseDuration(budgetParam)
	f := startFailoverSet(t)
	waitSwitch := f.watchSwitch(t)
	stores := make([]store.Store, instances)
	for i := range stores {
		stores[i] = open(t, with(f.sentinel.URL(), fmt.Sprintf("timeout=%v&failover_budget=%s", timeout, budgetParam)))
	}
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var (
		mu  sync.Mutex
		ops []budgetOp
		wg  sync.WaitGroup
	)
	for i, s := range stores {
		for w := range workers {
			wg.Go(func() {
				for n := 0; ctx.Err() == nil; n++ {
					chain := budgetChain(ctx, s, fmt.Sprintf("c-%d-%d-%d", i, w, n))
					if ctx.Err() != nil {
						return
					}
					mu.Lock()
					ops = append(ops, chain...)
					mu.Unlock()
					time.Sleep(2 * time.Millisecond) // pacing, not waiting
				}
			})
		}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(ops)
	}
	waitFor(t, 10*time.Second, "operations through every store", func() bool { return count() > 4*instances*workers })
	killed := time.Now()
	f.master.Kill()
	switched, _ := waitSwitch()
	// Load for a while after the switch: past the budget of anything
	// begun before it.
	time.Sleep(timeout + budget + time.Second)
	stop()
	wg.Wait()

	var failed, failedEarly, failedAfterSwitch, wrong int
	var slowest time.Duration
	for _, o := range ops {
		took := o.end.Sub(o.began)
		if o.began.After(killed) && o.began.Before(switched) {
			slowest = max(slowest, took)
		}
		if o.wrong != "" {
			wrong++
			t.Errorf("%s begun %v after the kill: %s", o.op, o.began.Sub(killed).Round(time.Millisecond), o.wrong)
		}
		if o.err == nil {
			continue
		}
		failed++
		if !errors.Is(o.err, store.ErrUnavailable) {
			t.Errorf("%s failed with %v, want only ErrUnavailable", o.op, o.err)
		}
		if took < timeout+budget-50*time.Millisecond {
			failedEarly++
		}
		if o.began.After(switched) {
			failedAfterSwitch++
		}
	}
	t.Logf("budget %v: %d operations; +switch-master %v after the kill; %d failed (%d before the budget ran out, %d begun after the switch); "+
		"slowest operation begun in the window took %v",
		budget, len(ops), switched.Sub(killed).Round(time.Millisecond), failed, failedEarly, failedAfterSwitch, slowest.Round(time.Millisecond))
	if wantFailures {
		if failed == 0 {
			t.Errorf("with failover_budget=0 no operation failed in a %v window; the test shows nothing", switched.Sub(killed).Round(time.Millisecond))
		}
		return
	}
	if failedEarly > 0 {
		t.Errorf("%d operations failed before their failover budget of %v ran out", failedEarly, budget)
	}
	if failedAfterSwitch > 0 {
		t.Errorf("%d operations begun after +switch-master failed", failedAfterSwitch)
	}
	retried := uint64(0)
	for _, s := range stores {
		for _, n := range s.(store.FailoverWaiter).Retries() {
			retried += n
		}
	}
	if retried == 0 {
		t.Errorf("no store retried anything through the failover")
	}
}

// budgetChain runs one login's worth of operations on key, each checked
// against what the chain itself wrote before, and stops at the first
// failure (whose effect is unknown).
func budgetChain(ctx context.Context, s store.Store, key string) []budgetOp {
	var out []budgetOp
	step := func(op string, do func() (wrong string, err error)) bool {
		o := budgetOp{op: op, began: time.Now()}
		o.wrong, o.err = do()
		o.end = time.Now()
		if ctx.Err() != nil {
			return false // the test is over; not an outcome
		}
		out = append(out, o)
		return o.err == nil && o.wrong == ""
	}
	const ttl = time.Minute
	_ = step("put-if-absent", func() (string, error) {
		err := s.PutIfAbsent(ctx, key, []byte("pending:a"), ttl)
		if errors.Is(err, store.ErrExists) {
			return "ErrExists for a key only this call wrote", nil
		}
		return "", err
	}) && step("swap", func() (string, error) {
		old, err := s.Swap(ctx, key, []byte("pending:b"), ttl)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return "Swap found nothing where PutIfAbsent had written", nil
		case err == nil && string(old) != "pending:a":
			return fmt.Sprintf("Swap replaced %q, want %q", old, "pending:a"), nil
		}
		return "", err
	}) && step("commit", func() (string, error) {
		old, then, err := store.CommitTo(ctx, s, store.Commit{Key: key, Value: []byte("used"), TTL: ttl, IfPrefix: []byte("pending:"),
			Then: []store.Write{{Key: key + ":replay", Value: []byte{1}, TTL: ttl, IfAbsent: true}}})
		switch {
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict):
			return fmt.Sprintf("Commit: %v after this chain's Swap", err), nil
		case err == nil && string(old) != "pending:b":
			return fmt.Sprintf("Commit replaced %q, want %q", old, "pending:b"), nil
		case err == nil && slices.ContainsFunc(then, func(e error) bool { return e != nil }):
			return fmt.Sprintf("Commit's IfAbsent write: %v", then), nil
		}
		return "", err
	}) && step("get", func() (string, error) {
		v, err := s.Get(ctx, key)
		if err == nil && !bytes.Equal(v, []byte("used")) {
			return fmt.Sprintf("Get = %q, want %q", v, "used"), nil
		}
		if errors.Is(err, store.ErrNotFound) {
			return "Get found nothing after the Commit", nil
		}
		return "", err
	})
	return out
}
