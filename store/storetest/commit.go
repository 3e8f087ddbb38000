package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/samlha/samlha/store"
)

// plain hides every optional interface of a store, so that the package
// helpers (store.CommitTo, store.GetMany) take their fallback paths.
type plain struct{ store.Store }

// modes returns s as the tests of an optional operation see it: through
// the store's own implementation, if it has one, and through the
// package helper's fallback over the plain Store methods.
func modes(s store.Store, native bool) map[string]store.Store {
	m := map[string]store.Store{"fallback": plain{s}}
	if native {
		m["native"] = s
	}
	return m
}

func isCommitter(s store.Store) bool   { _, ok := s.(store.Committer); return ok }
func isMultiGetter(s store.Store) bool { _, ok := s.(store.MultiGetter); return ok }

// Values as the SP writes them: a pending login begins with "P|", a
// tombstone with "T|".
var (
	pending = []byte("P|")
	used    = []byte("T|used")
)

// acs is the commit the SP's ACS makes: consume key, record the replay,
// store the session.
func acs(key, replay, sess string) store.Commit {
	return store.Commit{Key: key, Value: used, TTL: longTTL, IfPrefix: pending, Then: []store.Write{
		{Key: replay, Value: []byte{1}, TTL: longTTL, IfAbsent: true},
		{Key: sess, Value: []byte("session"), TTL: longTTL},
	}}
}

// wantThen checks a commit's per-write results.
func wantThen(t *testing.T, what string, got []error, want ...error) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d Then results %v, want %d", what, len(got), got, len(want))
	}
	for i := range want {
		if !matches(got[i], want[i]) {
			t.Fatalf("%s: Then result %d = %v, want %v", what, i, got[i], want[i])
		}
	}
}

func testCommit(t *testing.T, s store.Store, k keys) {
	for mode, s := range modes(s, isCommitter(s)) {
		ctx := t.Context()
		key, replay, sess := k.key(mode+"-req"), k.key(mode+"-replay"), k.key(mode+"-sess")
		mustPut(t, s, key, "P|pending login", longTTL)
		old, then, err := store.CommitTo(ctx, s, acs(key, replay, sess))
		if err != nil {
			t.Fatalf("%s: Commit of a pending login: %v", mode, err)
		}
		if diff := cmp.Diff("P|pending login", string(old)); diff != "" {
			t.Fatalf("%s: Commit returned the wrong old value (-want +got):\n%s", mode, diff)
		}
		wantThen(t, mode+": Commit", then, nil, nil)
		wantValue(t, s, key, string(used))
		wantValue(t, s, replay, "\x01")
		wantValue(t, s, sess, "session")

		// No guard and no Then writes: a Swap.
		old, then, err = store.CommitTo(ctx, s, store.Commit{Key: key, Value: []byte("again"), TTL: longTTL})
		if err != nil || string(old) != string(used) || len(then) != 0 {
			t.Fatalf("%s: Commit without guard = %q, %v, %v; want %q, no results, nil", mode, old, then, err, used)
		}
		wantValue(t, s, key, "again")
	}
}

func testCommitGuardFails(t *testing.T, s store.Store, k keys) {
	for mode, s := range modes(s, isCommitter(s)) {
		key, replay, sess := k.key(mode+"-req"), k.key(mode+"-replay"), k.key(mode+"-sess")
		// A tombstone with a short TTL: the failed commit must neither
		// replace it nor give it the commit's long TTL.
		start := time.Now()
		mustPut(t, s, key, "T|used before", shortTTL)
		old, then, err := store.CommitTo(t.Context(), s, acs(key, replay, sess))
		if !errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) || store.IsUnavailable(err) {
			t.Fatalf("%s: Commit over a tombstone: %v; want ErrConflict (and neither ErrNotFound nor ErrUnavailable)", mode, err)
		}
		if string(old) != "T|used before" || then != nil {
			t.Fatalf("%s: Commit over a tombstone returned %q, %v; want the live value and no Then results", mode, old, then)
		}
		wantAbsent(t, s, replay)
		wantAbsent(t, s, sess)
		if took := waitAbsent(t, s, key, start); took < shortTTL-expiryTolerance {
			t.Fatalf("%s: the tombstone was gone after %v, before its own TTL of %v", mode, took, shortTTL)
		}
	}
}

func testCommitAbsent(t *testing.T, s store.Store, k keys) {
	for mode, s := range modes(s, isCommitter(s)) {
		key, replay, sess := k.key(mode+"-req"), k.key(mode+"-replay"), k.key(mode+"-sess")
		old, then, err := store.CommitTo(t.Context(), s, acs(key, replay, sess))
		if !errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) || old != nil || then != nil {
			t.Fatalf("%s: Commit of an absent key = %q, %v, %v; want nothing and ErrNotFound", mode, old, then, err)
		}
		wantAbsent(t, s, key)
		wantAbsent(t, s, replay)
		wantAbsent(t, s, sess)
	}
}

func testCommitThenExists(t *testing.T, s store.Store, k keys) {
	for mode, s := range modes(s, isCommitter(s)) {
		key, replay, sess := k.key(mode+"-req"), k.key(mode+"-replay"), k.key(mode+"-sess")
		mustPut(t, s, key, "P|pending", longTTL)
		mustPut(t, s, replay, "earlier", longTTL)
		old, then, err := store.CommitTo(t.Context(), s, acs(key, replay, sess))
		if err != nil || string(old) != "P|pending" {
			t.Fatalf("%s: Commit = %q, %v; want the pending value and nil", mode, old, err)
		}
		wantThen(t, mode+": Commit with the replay record present", then, store.ErrExists, nil)
		wantValue(t, s, key, string(used))
		wantValue(t, s, replay, "earlier")
		wantValue(t, s, sess, "session")
	}
}

func testCommitTTL(t *testing.T, s store.Store, k keys) {
	for mode, s := range modes(s, isCommitter(s)) {
		key, short, long := k.key(mode+"-req"), k.key(mode+"-short"), k.key(mode+"-long")
		mustPut(t, s, key, "P|pending", longTTL)
		start := time.Now()
		_, then, err := store.CommitTo(t.Context(), s, store.Commit{Key: key, Value: used, TTL: shortTTL, IfPrefix: pending,
			Then: []store.Write{{Key: short, Value: []byte("s"), TTL: shortTTL}, {Key: long, Value: []byte("l"), TTL: longTTL}}})
		if err != nil {
			t.Fatalf("%s: Commit: %v", mode, err)
		}
		wantThen(t, mode+": Commit", then, nil, nil)
		for _, key := range []string{key, short} {
			if took := waitAbsent(t, s, key, start); took < shortTTL-expiryTolerance {
				t.Fatalf("%s: %q written with TTL %v was gone after %v", mode, key, shortTTL, took)
			}
		}
		wantValue(t, s, long, "l")
	}
}

func testCommitInvalid(t *testing.T, s store.Store, k keys) {
	for mode, s := range modes(s, isCommitter(s)) {
		key, other := k.key(mode+"-req"), k.key(mode+"-other")
		mustPut(t, s, key, "P|pending", longTTL)
		ok := store.Write{Key: other, Value: []byte("v"), TTL: longTTL}
		for name, c := range map[string]store.Commit{
			"empty key":           {Key: "", Value: used, TTL: longTTL, Then: []store.Write{ok}},
			"zero TTL":            {Key: key, Value: used, Then: []store.Write{ok}},
			"Then with empty key": {Key: key, Value: used, TTL: longTTL, Then: []store.Write{ok, {Value: []byte("v"), TTL: longTTL}}},
			"Then with bad TTL":   {Key: key, Value: used, TTL: longTTL, Then: []store.Write{ok, {Key: other, TTL: -1}}},
		} {
			old, then, err := store.CommitTo(t.Context(), s, c)
			if !errors.Is(err, store.ErrInvalid) || old != nil || then != nil {
				t.Fatalf("%s: Commit with %s = %q, %v, %v; want ErrInvalid and nothing else", mode, name, old, then, err)
			}
		}
		wantValue(t, s, key, "P|pending")
		wantAbsent(t, s, other)
	}
}

// testCommitExactlyOnce: workers commit the same pending logins at once,
// each with Then writes of its own. Of each key's commits exactly one
// succeeds, and only its writes are made.
func testCommitExactlyOnce(t *testing.T, s store.Store, k keys) {
	const workers, nkeys = 16, 12
	for mode, s := range modes(s, isCommitter(s)) {
		ctx := loadContext(t)
		key := func(i int) string { return k.key(fmt.Sprintf("%s-req-%d", mode, i)) }
		then := func(i, w int) string { return k.key(fmt.Sprintf("%s-then-%d-%d", mode, i, w)) }
		for i := range nkeys {
			mustPut(t, s, key(i), "P|pending", longTTL)
		}
		winners := make([][]int, nkeys)
		var (
			mu      sync.Mutex
			failure error
			wg      sync.WaitGroup
		)
		start := make(chan struct{})
		for w := range workers {
			order := perm(t, nkeys)
			wg.Go(func() {
				<-start
				for _, i := range order {
					c := store.Commit{Key: key(i), Value: fmt.Appendf(nil, "T|worker-%d", w), TTL: longTTL, IfPrefix: pending,
						Then: []store.Write{{Key: then(i, w), Value: []byte("v"), TTL: longTTL, IfAbsent: true}}}
					old, res, err := store.CommitTo(ctx, s, c)
					mu.Lock()
					switch {
					case err == nil && string(old) == "P|pending" && len(res) == 1 && res[0] == nil:
						winners[i] = append(winners[i], w)
					case errors.Is(err, store.ErrConflict) && len(old) > 0 && old[0] == 'T':
					case failure == nil:
						failure = fmt.Errorf("Commit of key %d by worker %d = %q, %v, %v", i, w, old, res, err)
					}
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		if failure != nil {
			t.Fatalf("%s: %v", mode, failure)
		}
		for i, ws := range winners {
			if len(ws) != 1 {
				t.Fatalf("%s: key %d: commits of workers %v succeeded, want exactly one", mode, i, ws)
			}
			vals, err := store.GetMany(t.Context(), s, func() []string {
				var ks []string
				for w := range workers {
					ks = append(ks, then(i, w))
				}
				return ks
			}())
			if err != nil {
				t.Fatalf("%s: GetMany of key %d's Then keys: %v", mode, i, err)
			}
			for w, v := range vals {
				if (v != nil) != (w == ws[0]) {
					t.Fatalf("%s: key %d: worker %d's Then write present %v; only the winner's (worker %d) may be", mode, i, w, v != nil, ws[0])
				}
			}
			if mode == "native" {
				wantValue(t, s, key(i), fmt.Sprintf("T|worker-%d", ws[0]))
			}
			// The fallback is not atomic: a loser that passed the Get
			// before the winner's Swap swaps its own tombstone in.
		}
	}
}

func testGetMany(t *testing.T, s store.Store, k keys) {
	for mode, s := range modes(s, isMultiGetter(s)) {
		ctx := t.Context()
		a, empty, missing := k.key(mode+"-a"), k.key(mode+"-empty"), k.key(mode+"-missing")
		mustPut(t, s, a, "va", longTTL)
		mustPut(t, s, empty, "", longTTL)
		vals, err := store.GetMany(ctx, s, []string{a, missing, empty, a})
		if err != nil {
			t.Fatalf("%s: GetMany: %v", mode, err)
		}
		if len(vals) != 4 || string(vals[0]) != "va" || vals[1] != nil || vals[2] == nil || len(vals[2]) != 0 || string(vals[3]) != "va" {
			t.Fatalf("%s: GetMany(a, missing, empty, a) = %#v; want \"va\", nil, an empty non-nil value, \"va\"", mode, vals)
		}
		vals[0][0] = 'X' // the caller owns it
		wantValue(t, s, a, "va")

		if vals, err := store.GetMany(ctx, s, nil); err != nil || len(vals) != 0 {
			t.Fatalf("%s: GetMany of no keys = %v, %v; want nothing", mode, vals, err)
		}
		if _, err := store.GetMany(ctx, s, []string{a, ""}); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("%s: GetMany with an empty key: %v, want ErrInvalid", mode, err)
		}

		// Many keys, every other one present.
		var ks []string
		for i := range 200 {
			ks = append(ks, k.key(fmt.Sprintf("%s-many-%d", mode, i)))
			if i%2 == 0 {
				mustPut(t, s, ks[i], fmt.Sprint(i), longTTL)
			}
		}
		vals, err = store.GetMany(ctx, s, ks)
		if err != nil || len(vals) != len(ks) {
			t.Fatalf("%s: GetMany of %d keys: %d values, %v", mode, len(ks), len(vals), err)
		}
		for i, v := range vals {
			if (i%2 == 0) != (v != nil) || (v != nil && string(v) != fmt.Sprint(i)) {
				t.Fatalf("%s: GetMany of %d keys: value %d = %q (present %v)", mode, len(ks), i, v, v != nil)
			}
		}
	}
}
