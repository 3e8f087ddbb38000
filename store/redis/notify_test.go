package redis_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/redis/redistest"
	"github.com/samlha/samlha/store/storetest"
)

// Liveness settings of the subscriptions under test, and the allowance for
// a loaded machine (two cores, the race detector, other tests) on top of
// the bound they promise.
const (
	notifyParams = "heartbeat=100ms&liveness=500ms"
	notifyBound  = 500 * time.Millisecond
	notifySlack  = 750 * time.Millisecond
)

// publisher publishes numbered messages on a channel, one after another,
// as another replica would, and records when each publish began and ended.
type publisher struct {
	mu         sync.Mutex
	began, end []time.Time // by number; end is zero for a failed publish
	stop, done chan struct{}
}

func startPublisher(t *testing.T, n store.Notifier, channel, prefix string) *publisher {
	p := &publisher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(2 * time.Millisecond) // pacing, not waiting
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			began := time.Now()
			err := n.Publish(context.Background(), channel, fmt.Appendf(nil, "%s%d", prefix, i))
			p.mu.Lock()
			p.began = append(p.began, began)
			p.end = append(p.end, time.Time{})
			if err == nil {
				p.end[i] = time.Now()
			}
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { p.Stop() })
	return p
}

// Stop stops publishing and returns how many publishes were made.
func (p *publisher) Stop() int {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.began)
}

// published returns when publish n began, if it succeeded.
func (p *publisher) published(n int) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n < 0 || n >= len(p.began) || p.end[n].IsZero() {
		return time.Time{}, false
	}
	return p.began[n], true
}

// checkBound checks DeliveryBound from the consumer's side: every message
// published (successfully) was read, or the subscription was not live at
// some moment between the publish's start and bound after its end.
func checkBound(t *testing.T, events []storetest.Recorded, p *publisher, prefix string, bound time.Duration) {
	t.Helper()
	read := map[int]bool{}
	for _, ev := range events {
		if n, ok := storetest.Sequenced(ev.Event, prefix); ok {
			read[n] = true
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	missed := 0
	for n := range p.began {
		if read[n] || p.end[n].IsZero() {
			continue
		}
		missed++
		from, until := p.began[n], p.end[n].Add(bound)
		live, lostInWindow := false, false
		for _, ev := range events {
			switch {
			case ev.At.After(until):
			case !ev.At.After(from) && ev.Kind == store.EventLive:
				live = true
			case !ev.At.After(from) && ev.Kind == store.EventLost:
				live = false
			case ev.Kind == store.EventLost:
				lostInWindow = true
			}
		}
		if live && !lostInWindow {
			t.Fatalf("message %d, published %s..%s, was never read, yet the subscription stayed live until %v after",
				n, from.Format(time.StampMicro), p.end[n].Format(time.StampMicro), bound)
		}
	}
	t.Logf("%d messages published, %d not read (published while the subscription was not live)", len(p.began), missed)
}

// waitRead waits until at least n more messages numbered prefix... have
// been read after event index from.
func waitRead(t *testing.T, w *storetest.Watcher, from, n int, prefix string) {
	t.Helper()
	w.Wait(t, 10*time.Second, fmt.Sprintf("%d messages", n), func(events []storetest.Recorded, _ bool) bool {
		got := 0
		for _, ev := range events[min(from, len(events)):] {
			if _, ok := storetest.Sequenced(ev.Event, prefix); ok {
				got++
			}
		}
		return got >= n
	})
}

// faultRun subscribes through sub, publishes through pub, and breaks the
// subscription with fault (which returns when it struck) twice. Each time
// Lost must be read within the bound of the fault, and Live must follow;
// no message may be skipped while live, nor one published after a Live
// was read; and every message is read or the subscription was not live
// within the bound of its publish.
func faultRun(t *testing.T, sub, pub store.Notifier, fault func() time.Time) {
	const prefix = "m"
	channel := "faults"
	s, err := sub.Subscribe(t.Context(), channel)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	w := storetest.Watch(s)
	w.WaitFrom(t, 0, store.EventLive, 10*time.Second)
	p := startPublisher(t, pub, channel, prefix)
	waitRead(t, w, 0, 20, prefix)
	for round := range 2 {
		from := w.Len()
		struck := fault()
		lost := w.WaitFrom(t, from, store.EventLost, 10*time.Second)
		took := w.Events()[lost].At.Sub(struck)
		t.Logf("round %d: Lost read %v after the fault", round, took.Round(time.Millisecond))
		if took > notifyBound+notifySlack {
			t.Errorf("round %d: Lost read %v after the fault; the bound is %v (+%v for a loaded machine)", round, took, notifyBound, notifySlack)
		}
		live := w.WaitFrom(t, lost, store.EventLive, 10*time.Second)
		t.Logf("round %d: Live again %v after the fault", round, w.Events()[live].At.Sub(struck).Round(time.Millisecond))
		waitRead(t, w, live, 20, prefix)
	}
	stopped := time.Now()
	last := p.Stop() - 1
	// The last message is read, unless the subscription has been lost since.
	w.Wait(t, 10*time.Second, fmt.Sprintf("message %d, or a Lost", last), func(events []storetest.Recorded, _ bool) bool {
		for _, ev := range events {
			if n, ok := storetest.Sequenced(ev.Event, prefix); ok && n == last {
				return true
			}
			if ev.Kind == store.EventLost && ev.At.After(stopped) {
				return true
			}
		}
		return false
	})
	events := w.Events()
	if err := storetest.CheckSequence(events, prefix, p.published); err != nil {
		t.Fatal(err)
	}
	checkBound(t, events, p, prefix, notifyBound+notifySlack)
}

// killPubSub kills every pub/sub connection of the servers behind clients.
func killPubSub(t *testing.T, clients ...*goredis.Client) func() time.Time {
	return func() time.Time {
		at := time.Now()
		for _, c := range clients {
			if err := c.Do(t.Context(), "client", "kill", "type", "pubsub").Err(); err != nil {
				t.Fatalf("CLIENT KILL TYPE pubsub: %v", err)
			}
		}
		return at
	}
}

// TestSubscriptionConnectionKilled kills the subscription's connection
// (CLIENT KILL TYPE pubsub) under a stream of messages from another store,
// on each topology.
func TestSubscriptionConnectionKilled(t *testing.T) {
	t.Parallel()
	plain := redistest.Start(t)
	tlsSrv := redistest.Start(t, redistest.WithTLS(), redistest.WithPassword(password))
	master := redistest.Start(t, redistest.WithPassword(password))
	sentinel := redistest.StartSentinel(t, master, "samlha-master")
	cluster := redistest.StartCluster(t, 3)
	var clusterClients []*goredis.Client
	for _, n := range cluster.Nodes {
		clusterClients = append(clusterClients, n.Client())
	}
	for _, tc := range []struct {
		name, url string
		kill      func() time.Time
	}{
		{"standalone", plain.URL(), killPubSub(t, plain.Client())},
		{"tls", tlsSrv.URL(), killPubSub(t, tlsSrv.Client())},
		{"sentinel", sentinel.URL(), killPubSub(t, master.Client())},
		{"cluster", cluster.URL(), killPubSub(t, clusterClients...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := with(tc.url, notifyParams)
			sub, pub := open(t, url).(store.Notifier), open(t, url).(store.Notifier)
			if got := sub.DeliveryBound(); got != notifyBound {
				t.Fatalf("DeliveryBound() = %v, want %v (liveness)", got, notifyBound)
			}
			faultRun(t, sub, pub, tc.kill)
		})
	}
}

// TestSubscriptionConnectionStalled stalls the subscriber's connections
// without closing them (a proxy stops forwarding): nothing fails, no error
// comes, and only the missing heartbeats can tell. Lost must come within
// the bound, and Live once the subscription has a new connection.
func TestSubscriptionConnectionStalled(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	sub := open(t, with("redis://"+proxy.Addr(), notifyParams)).(store.Notifier)
	pub := open(t, with(srv.URL(), notifyParams)).(store.Notifier)
	faultRun(t, sub, pub, func() time.Time {
		at := time.Now()
		proxy.Stall()
		return at
	})
}
