package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/internal/eventq"
)

var _ store.Notifier = (*Store)(nil)

// Defaults of a subscription's liveness check.
const (
	// DefaultHeartbeat is how often a subscription publishes a heartbeat
	// to itself.
	DefaultHeartbeat = 250 * time.Millisecond
	// DefaultLiveness is how long a subscription stays live without a
	// heartbeat proving it: DeliveryBound.
	DefaultLiveness = time.Second
)

// How a subscription retries after it lost its connection.
const (
	resubscribeMin = 20 * time.Millisecond
)

// channelName is channel's name on Redis: under the store's prefix, as a
// hash tag, so that a subscription's heartbeat channel lies in the same
// Cluster slot (hence on the same node) as the channel itself.
func (s *Store) channelName(channel string) string {
	return s.prefix + "notify:{" + channel + "}"
}

// Publish implements store.Notifier: PUBLISH, or SPUBLISH on a Cluster
// (sharded pub/sub: the message goes to the node that serves the channel's
// slot, the node its subscriptions listen on). The client may resend a
// publish whose connection failed, so a message can arrive twice.
func (s *Store) Publish(ctx context.Context, channel string, msg []byte) error {
	const op = "publish"
	if err := store.CheckChannel(channel); err != nil {
		return err
	}
	if err := store.CheckValue(msg, MaxValueLen); err != nil {
		return err
	}
	cctx, cancel, err := s.call(ctx, op)
	if err != nil {
		return err
	}
	defer cancel()
	if err := s.publish(cctx, s.channelName(channel), msg); err != nil {
		return s.fail(ctx, cctx, op, err)
	}
	return nil
}

func (s *Store) publish(ctx context.Context, name string, msg []byte) error {
	verb := "publish"
	if _, cluster := s.cli().(*goredis.ClusterClient); cluster {
		verb = "spublish"
	}
	return s.process(ctx, goredis.NewIntCmd(ctx, verb, name, msg))
}

// DeliveryBound implements store.Notifier: the liveness timeout (URL
// parameter liveness, default 1s).
func (s *Store) DeliveryBound() time.Duration { return s.liveness }

// Subscribe implements store.Notifier.
//
// A subscription runs its own receive loop on a connection of its own,
// rather than go-redis's PubSub channel, which reconnects in silence and
// loses what was published meanwhile. It subscribes to the channel and to
// a heartbeat channel of its own in the same slot (SUBSCRIBE, or
// SSUBSCRIBE on a Cluster), and every heartbeat interval publishes a
// heartbeat to itself through the path every publisher uses (the store's
// client, to the master, or on a Cluster to the slot's master), carrying
// the moment it was sent. Redis delivers what it executes in order, to the
// subscription's connection directly or through its replication stream,
// so receiving a heartbeat sent at time h proves that every message
// published before h and after the subscription began has been received.
//
// The subscription is Live once it has received the confirmation of its
// subscribe and then a heartbeat sent after it; it stays Live while the
// last heartbeat received was sent within the liveness timeout. When that
// timeout passes, or the connection fails, or the server ends the
// subscription (a Cluster slot that moved), it emits Lost at once, closes
// the connection and subscribes again on a new one. Hence DeliveryBound:
// a message published at t and not delivered means no heartbeat sent
// after t arrived, so Lost was emitted by t + liveness. This also covers
// what a PING on the subscription's connection would not: a subscription
// left on a server that is no longer the master (a partition, a Sentinel
// failover) receives no heartbeat, and is Lost.
func (s *Store) Subscribe(ctx context.Context, channel string) (store.Subscription, error) {
	const op = "subscribe"
	if s.closed.Load() {
		return nil, fmt.Errorf("redis %s: %w", op, store.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redis %s: %w", op, err)
	}
	if err := store.CheckChannel(channel); err != nil {
		return nil, err
	}
	name := s.channelName(channel)
	sub := &subscription{
		s:     s,
		name:  name,
		beat:  name + ":hb:" + rand.Text(),
		q:     eventq.New(),
		base:  time.Now(),
		stop:  make(chan struct{}),
		kick:  make(chan struct{}, 1),
		ended: make(chan struct{}),
	}
	if !s.subs.add(sub) {
		sub.q.Close()
		return nil, fmt.Errorf("redis %s: %w", op, store.ErrClosed)
	}
	var wg sync.WaitGroup
	wg.Go(sub.receive)
	wg.Go(sub.heartbeat)
	go func() { wg.Wait(); close(sub.ended) }()
	return sub, nil
}

// subscriptions are a store's open subscriptions, ended by its Close.
type subscriptions struct {
	mu     sync.Mutex
	open   map[*subscription]struct{}
	closed bool
}

func (ss *subscriptions) add(sub *subscription) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return false
	}
	if ss.open == nil {
		ss.open = map[*subscription]struct{}{}
	}
	ss.open[sub] = struct{}{}
	return true
}

func (ss *subscriptions) remove(sub *subscription) {
	ss.mu.Lock()
	delete(ss.open, sub)
	ss.mu.Unlock()
}

// resetAll makes every subscription drop its connection and subscribe
// again, with the client in use now: the store follows a new master, and a
// connection to the old one could go on receiving heartbeats (once it
// replicates from the new master) without what was published before that.
func (ss *subscriptions) resetAll() {
	ss.mu.Lock()
	open := make([]*subscription, 0, len(ss.open))
	for sub := range ss.open {
		open = append(open, sub)
	}
	ss.mu.Unlock()
	for _, sub := range open {
		sub.psMu.Lock()
		if sub.ps != nil {
			sub.ps.Close()
		}
		sub.psMu.Unlock()
	}
}

// closeAll ends every subscription; later ones are refused.
func (ss *subscriptions) closeAll() {
	ss.mu.Lock()
	ss.closed = true
	open := ss.open
	ss.open = nil
	ss.mu.Unlock()
	for sub := range open {
		sub.end()
	}
}

type subscription struct {
	s    *Store
	name string // the channel on Redis
	beat string // this subscription's heartbeat channel
	q    *eventq.Queue
	base time.Time // heartbeats carry their time since base (monotonic)

	// confirmed: the current connection's subscribe is confirmed;
	// heartbeats are sent only then.
	confirmed atomic.Bool

	psMu sync.Mutex
	ps   *goredis.PubSub // the current connection, closed by end

	stop     chan struct{}
	kick     chan struct{} // a heartbeat now, please
	ended    chan struct{}
	stopOnce sync.Once
}

func (sub *subscription) Events() <-chan store.Event { return sub.q.Events() }

// Close implements store.Subscription.
func (sub *subscription) Close() error {
	sub.s.subs.remove(sub)
	sub.end()
	return nil
}

// end stops the loops, closes the connection and the events.
func (sub *subscription) end() {
	sub.stopOnce.Do(func() {
		close(sub.stop)
		sub.psMu.Lock()
		if sub.ps != nil {
			sub.ps.Close()
		}
		sub.psMu.Unlock()
	})
	<-sub.ended
	sub.q.Close()
}

func (sub *subscription) stopped() bool {
	select {
	case <-sub.stop:
		return true
	default:
		return false
	}
}

func (sub *subscription) now() time.Duration { return time.Since(sub.base) }

func (sub *subscription) setConfirmed(ok bool) {
	sub.confirmed.Store(ok)
	if ok {
		select {
		case sub.kick <- struct{}{}:
		default:
		}
	}
}

// heartbeat publishes, every interval and on a kick, the time since base
// to the heartbeat channel, while a subscribe is confirmed. A heartbeat
// that fails is simply not received.
func (sub *subscription) heartbeat() {
	s := sub.s
	t := time.NewTicker(s.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-sub.stop:
			return
		case <-t.C:
		case <-sub.kick:
		}
		if !sub.confirmed.Load() {
			continue
		}
		ctx, cancel := context.WithTimeout(background(context.Background()), min(s.timeout, s.liveness))
		sent := sub.now()
		_ = s.publish(ctx, sub.beat, strconv.AppendInt(nil, int64(sent), 10))
		cancel()
	}
}

// receive is the subscription's loop: subscribe, prove, deliver, and on any
// doubt report Lost and start again on a new connection.
func (sub *subscription) receive() {
	s := sub.s
	ctx := background(context.Background())
	wait := time.Duration(0)
	for !sub.stopped() {
		if wait > 0 {
			select {
			case <-sub.stop:
				return
			case <-time.After(wait):
			}
		}
		err := sub.session(ctx)
		s.nudgeCluster(err)
		sub.setConfirmed(false)
		sub.q.SetHealthy(false)
		if sub.stopped() {
			return
		}
		var lived *livedError
		if errors.As(err, &lived) {
			wait = 0 // it was live: try again at once
		} else {
			wait = min(max(2*wait, resubscribeMin), s.heartbeat)
		}
		s.logger.Debug("redis subscription lost; subscribing again", "channel", sub.name, "err", err, "retry_in", wait)
	}
}

// livedError is how a session that was live ends.
type livedError struct{ err error }

func (e *livedError) Error() string { return e.err.Error() }

// session runs one connection of the subscription until it fails or is
// stopped, and returns why it ended.
func (sub *subscription) session(ctx context.Context) error {
	s := sub.s
	ref := s.client.Load()
	var ps *goredis.PubSub
	if c, ok := ref.UniversalClient.(*goredis.ClusterClient); ok {
		ps = c.SSubscribe(ctx, sub.name, sub.beat)
	} else {
		ps = ref.Subscribe(ctx, sub.name, sub.beat)
	}
	sub.psMu.Lock()
	// A client replaced meanwhile (a new master) would not have seen
	// this connection to reset it.
	if sub.stopped() || s.client.Load() != ref {
		sub.psMu.Unlock()
		ps.Close()
		return errors.New("stopped, or the client was replaced")
	}
	sub.ps = ps
	sub.psMu.Unlock()
	defer func() {
		sub.psMu.Lock()
		sub.ps = nil
		sub.psMu.Unlock()
		ps.Close()
	}()

	if err := sub.confirm(ctx, ps); err != nil {
		return err
	}
	return sub.deliver(ctx, ps, sub.now())
}

// confirm waits until the server has confirmed both channels, within the
// liveness timeout.
func (sub *subscription) confirm(ctx context.Context, ps *goredis.PubSub) error {
	start := sub.now()
	pending := map[string]bool{sub.name: true, sub.beat: true}
	for len(pending) > 0 {
		left := start + sub.s.liveness - sub.now()
		if left <= 0 {
			return errors.New("subscribe not confirmed within the liveness timeout")
		}
		msg, err := ps.ReceiveTimeout(ctx, left)
		if err != nil {
			return err
		}
		if m, ok := msg.(*goredis.Subscription); ok && (m.Kind == "subscribe" || m.Kind == "ssubscribe") {
			delete(pending, m.Channel)
		}
	}
	sub.setConfirmed(true)
	return nil
}

// deliver hands messages to the queue and proves liveness by heartbeats
// sent after confirmed, until the connection fails or stays unproven for
// the liveness timeout.
func (sub *subscription) deliver(ctx context.Context, ps *goredis.PubSub, confirmed time.Duration) error {
	s := sub.s

	proven := time.Duration(-1) // when the last heartbeat received was sent
	wasLive := false
	ended := func(err error) error {
		if wasLive {
			return &livedError{err}
		}
		return err
	}
	for {
		deadline := confirmed + s.liveness
		if proven >= 0 {
			deadline = proven + s.liveness
		}
		left := deadline - sub.now()
		if left <= 0 {
			return ended(fmt.Errorf("no heartbeat sent within the last %v was received", s.liveness))
		}
		msg, err := ps.ReceiveTimeout(ctx, left)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				return ended(fmt.Errorf("no heartbeat sent within the last %v was received", s.liveness))
			}
			return ended(err)
		}
		switch m := msg.(type) {
		case *goredis.Message:
			switch m.Channel {
			case sub.name:
				sub.q.Message([]byte(m.Payload))
			case sub.beat:
				sent, err := strconv.ParseInt(m.Payload, 10, 64)
				// Only a heartbeat sent after the subscribe was
				// confirmed proves anything, and none from the future.
				if err != nil || time.Duration(sent) < confirmed || time.Duration(sent) > sub.now() {
					continue
				}
				if time.Duration(sent) > proven {
					proven = time.Duration(sent)
				}
				sub.q.SetHealthy(true)
				wasLive = true
			}
		case *goredis.Subscription:
			if m.Kind == "unsubscribe" || m.Kind == "sunsubscribe" {
				return ended(fmt.Errorf("the server ended the subscription (%s %s)", m.Kind, m.Channel))
			}
		}
	}
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
