package redis_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/redis/redistest"
	"github.com/samlha/samlha/store/storetest"
)

// failoverSet is a master, a replica that follows it, and the Sentinels
// that watch them.
type failoverSet struct {
	master, replica *redistest.Server
	sentinel        *redistest.Sentinel // the first of sentinels
	sentinels       []*redistest.Sentinel
}

const masterName = "samlha-master"

// startFailoverSet starts a master, a replica of it, and a Sentinel that
// knows both, and waits until the replica replicates.
func startFailoverSet(t *testing.T, opts ...redistest.SentinelOption) *failoverSet {
	t.Helper()
	return startSentinelSet(t, 1, opts...)
}

// startSentinelSet is startFailoverSet with n Sentinels, and waits also
// until each knows the others (they find each other through the master's
// hello channel, every 2 s).
func startSentinelSet(t *testing.T, n int, opts ...redistest.SentinelOption) *failoverSet {
	t.Helper()
	ctx := t.Context()
	f := &failoverSet{master: redistest.Start(t)}
	host, port, _ := strings.Cut(f.master.Addr(), ":")
	f.replica = redistest.Start(t, redistest.WithArgs("--replicaof", host, port))
	f.replica.WaitReplicating(t)
	for range n {
		f.sentinels = append(f.sentinels, redistest.StartSentinel(t, f.master, masterName, opts...))
	}
	f.sentinel = f.sentinels[0]
	for i, s := range f.sentinels {
		waitFor(t, 20*time.Second, fmt.Sprintf("Sentinel %d to know the replica and %d other Sentinels", i, n-1), func() bool {
			replicas, err := s.Client().Do(ctx, "SENTINEL", "REPLICAS", masterName).Slice()
			if err != nil || len(replicas) != 1 {
				return false
			}
			others, err := s.Client().Do(ctx, "SENTINEL", "SENTINELS", masterName).Slice()
			return err == nil && len(others) == n-1
		})
	}
	return f
}

// watchSwitch subscribes to the last Sentinel's +switch-master and returns
// a function that waits for it and returns when it came and the new
// master's address.
func (f *failoverSet) watchSwitch(t *testing.T) func() (time.Time, string) {
	t.Helper()
	last := f.sentinels[len(f.sentinels)-1]
	sc := goredis.NewSentinelClient(&goredis.Options{Addr: last.Addr(), Password: last.Password(), DisableIdentity: true})
	t.Cleanup(func() { sc.Close() })
	ps := sc.Subscribe(t.Context(), "+switch-master")
	t.Cleanup(func() { ps.Close() })
	if _, err := ps.ReceiveTimeout(t.Context(), 10*time.Second); err != nil {
		t.Fatalf("subscribe to +switch-master: %v", err)
	}
	type sw struct {
		at   time.Time
		addr string
	}
	got := make(chan sw, 1)
	go func() {
		for {
			msg, err := ps.ReceiveMessage(context.Background())
			if err != nil {
				return
			}
			// "<name> <old ip> <old port> <new ip> <new port>"
			if f := strings.Fields(msg.Payload); len(f) == 5 && f[0] == masterName {
				got <- sw{time.Now(), f[3] + ":" + f[4]}
				return
			}
		}
	}()
	return func() (time.Time, string) {
		select {
		case s := <-got:
			return s.at, s.addr
		case <-time.After(60 * time.Second):
			t.Fatal("no +switch-master within 60s")
		}
		return time.Time{}, ""
	}
}

// sentinelPassword is the Sentinels' own password where they have one.
const sentinelPassword = "sentinel-pw-71c4"

// attempt is one write of a failover run: its key, when it ended and how.
type attempt struct {
	key string
	end time.Time
	err error
}

// writeLoad is paced writers, each a Put every 5 ms through its store,
// with every attempt recorded by group, until end (or the test's end).
type writeLoad struct {
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu      sync.Mutex
	byGroup map[string][]attempt
}

func newWriteLoad(t *testing.T) *writeLoad {
	ctx, stop := context.WithCancel(t.Context())
	l := &writeLoad{ctx: ctx, stop: stop, byGroup: map[string][]attempt{}}
	t.Cleanup(l.end)
	return l
}

// writer starts a writer through s whose attempts go to group, its n-th
// write to key(n); while pause (if not nil) says so it skips its turns.
func (l *writeLoad) writer(group string, s store.Store, key func(n int) string, pause func() bool) {
	l.wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond) // pacing, not waiting
		defer tick.Stop()
		for n := 0; l.ctx.Err() == nil; n++ {
			if pause == nil || !pause() {
				k := key(n)
				err := s.Put(l.ctx, k, []byte("v"), time.Minute)
				if l.ctx.Err() != nil {
					return
				}
				l.mu.Lock()
				l.byGroup[group] = append(l.byGroup[group], attempt{k, time.Now(), err})
				l.mu.Unlock()
			}
			select {
			case <-l.ctx.Done():
			case <-tick.C:
			}
		}
	})
}

// attempts returns the attempts so far, by group.
func (l *writeLoad) attempts() map[string][]attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.byGroup)
}

// succeededAfter reports whether every one of groups has a write that
// succeeded after t.
func (l *writeLoad) succeededAfter(t time.Time, groups int) bool {
	all := l.attempts()
	if len(all) < groups {
		return false
	}
	for _, as := range all {
		ok := false
		for _, a := range as {
			ok = ok || a.err == nil && a.end.After(t)
		}
		if !ok {
			return false
		}
	}
	return true
}

// end stops the writers and waits for them.
func (l *writeLoad) end() {
	l.stop()
	l.wg.Wait()
}

// TestSentinelFollowsFailoverWithinASecond fails the master over under a
// load of writes from several store instances (replicas of the SP), and
// measures, for each, the time from the Sentinel's +switch-master to the
// first of its writes the new master holds (every later one held too):
// under a second each; every failure in between unavailable (never absent,
// never a conflict); no acknowledged write lost. Two ways: the master is
// killed (connections refused until the switch), or a Sentinel is told to
// fail over (SENTINEL FAILOVER: the old master stays up and is demoted to
// a replica, answering writes with READONLY). And the production shape,
// an election: three Sentinels with a quorum of two, the one the URL lists
// first killed before the master, so that the two left must agree that the
// master is down and elect one of them to fail over, and the store must
// find the new master through a Sentinel list whose first entry refuses
// connections. And a planned failover run by the Sentinel the URL lists
// last, of three with a password of their own (sentinel_password in the
// URL): the store must listen to every Sentinel, authenticated, to hear the
// failover begin. A subscription through one of the
// instances must be Live again after the switch and receive what another
// instance publishes.
func TestSentinelFollowsFailoverWithinASecond(t *testing.T) {
	t.Parallel()
	for _, fault := range []string{"kill", "sentinel-failover", "election", "failover-elsewhere"} {
		t.Run(fault, func(t *testing.T) {
			t.Parallel()
			failoverRun(t, fault)
		})
	}
}

func failoverRun(t *testing.T, fault string) {
	const (
		instances = 4
		writers   = 4 // concurrent callers per instance
		bound     = time.Second
	)
	var f *failoverSet
	switch fault {
	case "election":
		// failover-timeout bounds the retry after an election that chose
		// nobody (both Sentinels asked for votes in the same epoch): 2x.
		f = startSentinelSet(t, 3, redistest.WithQuorum(2), redistest.WithFailoverTimeout(3*time.Second))
	case "failover-elsewhere":
		f = startSentinelSet(t, 3, redistest.WithQuorum(2), redistest.WithSentinelPassword(sentinelPassword))
	default:
		f = startFailoverSet(t)
	}
	waitSwitch := f.watchSwitch(t)
	url := redistest.SentinelsURL(f.sentinels...)
	stores := make([]store.Store, instances)
	for i := range stores {
		stores[i] = open(t, with(url, "timeout=500ms"))
	}
	load := newWriteLoad(t)
	// Instance i is idle for i*300ms after the kill, as a replica without
	// traffic at that moment would be: each meets the outage at its own
	// moment (and go-redis's dial breaker, if it trips, at its own phase).
	var killedAt atomic.Int64
	for i, s := range stores {
		idle := func() bool {
			k := killedAt.Load()
			return k != 0 && time.Since(time.Unix(0, k)) < time.Duration(i)*300*time.Millisecond
		}
		for w := range writers {
			load.writer(strconv.Itoa(i), s, func(n int) string { return fmt.Sprintf("k-%d-%d-%d", i, w, n) }, idle)
		}
	}
	// Load before the fault, so that every instance has its connections.
	waitFor(t, 10*time.Second, "writes through every instance", func() bool {
		all := load.attempts()
		for i := range instances {
			if len(all[strconv.Itoa(i)]) < writers {
				return false
			}
		}
		return true
	})
	sub, err := stores[0].(store.Notifier).Subscribe(t.Context(), "failover")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer sub.Close()
	events := storetest.Watch(sub)
	events.WaitFrom(t, 0, store.EventLive, 10*time.Second)
	killed := time.Now()
	killedAt.Store(killed.UnixNano())
	from := events.Len()
	switch fault {
	case "kill":
		f.master.Kill()
	case "sentinel-failover":
		if err := f.sentinel.Client().Do(t.Context(), "SENTINEL", "FAILOVER", masterName).Err(); err != nil {
			t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
	case "election":
		f.sentinels[0].Kill()
		f.master.Kill()
	case "failover-elsewhere":
		last := f.sentinels[len(f.sentinels)-1]
		if err := last.Client().Do(t.Context(), "SENTINEL", "FAILOVER", masterName).Err(); err != nil {
			t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
	}
	switched, newMaster := waitSwitch()
	if newMaster != f.replica.Addr() {
		t.Fatalf("+switch-master named %s, want the replica %s", newMaster, f.replica.Addr())
	}
	// Every instance writes for a while after the switch.
	waitFor(t, bound+10*time.Second, "writes through every instance for a second after the switch", func() bool {
		return load.succeededAfter(switched.Add(bound), instances)
	})
	load.end()
	attempts := load.attempts()

	// The subscription was lost with the old master, and is live on the
	// new one: what another instance publishes now reaches it.
	lost := events.WaitFrom(t, from, store.EventLost, 10*time.Second)
	live := events.WaitFrom(t, lost, store.EventLive, 10*time.Second)
	t.Logf("subscription: Lost %v after the fault, Live %v after +switch-master",
		events.Events()[lost].At.Sub(killed).Round(time.Millisecond), events.Events()[live].At.Sub(switched).Round(time.Millisecond))
	if err := stores[1].(store.Notifier).Publish(t.Context(), "failover", []byte("after")); err != nil {
		t.Fatalf("Publish after the failover: %v", err)
	}
	events.WaitPayload(t, "after", 10*time.Second)

	t.Logf("%s: +switch-master %v after the fault", fault, switched.Sub(killed).Round(time.Millisecond))
	// Which acknowledged writes the new master holds.
	onNew := map[string]bool{}
	onMaster := f.replica.Client()
	for _, as := range attempts {
		for _, a := range as {
			if a.err == nil {
				n, err := onMaster.Exists(t.Context(), "samlha:"+a.key).Result()
				if err != nil {
					t.Fatalf("EXISTS on the new master: %v", err)
				}
				onNew[a.key] = n == 1
			}
		}
	}
	var report []string
	for i := range instances {
		as := attempts[strconv.Itoa(i)]
		// The instance follows the new master from its first write after
		// the switch that the new master holds, every later one with it.
		var first time.Time
		failed, lostBefore, lostAfter := 0, 0, 0
		for _, a := range as {
			switch {
			case a.err != nil && a.end.After(killed):
				failed++
				if !errors.Is(a.err, store.ErrUnavailable) || errors.Is(a.err, store.ErrNotFound) {
					t.Errorf("instance %d: a write during the failover failed with %v, want only ErrUnavailable", i, a.err)
				}
			case a.err != nil:
			case !onNew[a.key] && a.end.After(switched):
				lostAfter++
				first = time.Time{}
			case !onNew[a.key] && a.end.After(killed):
				lostBefore++
			case a.end.After(switched) && first.IsZero():
				first = a.end
			}
		}
		took := first.Sub(switched)
		report = append(report, strconv.FormatInt(took.Milliseconds(), 10)+"ms")
		t.Logf("instance %d: follows the new master %v after +switch-master; since the fault %d writes failed (unavailable), "+
			"%d acknowledged writes were lost before the switch and %d after it",
			i, took.Round(time.Millisecond), failed, lostBefore, lostAfter)
		switch {
		case first.IsZero():
			t.Errorf("instance %d: no write reached the new master after +switch-master", i)
		case took > bound:
			t.Errorf("instance %d: follows the new master %v after +switch-master, want under %v", i, took, bound)
		}
		if lostBefore+lostAfter > 0 {
			t.Errorf("instance %d: %d writes acknowledged after the fault are not on the new master", i, lostBefore+lostAfter)
		}
	}
	if out := os.Getenv("SAMLHA_FAILOVER_REPORT"); out != "" {
		line := fmt.Sprintf("%s: fault->switch %dms; switch->first write per instance: %s\n",
			fault, switched.Sub(killed).Milliseconds(), strings.Join(report, " "))
		fh, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, err = fh.WriteString(line)
			fh.Close()
		}
		if err != nil {
			t.Errorf("write %s: %v", out, err)
		}
	}
}
