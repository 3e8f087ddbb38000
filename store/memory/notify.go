package memory

import (
	"context"
	"sync"
	"time"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/internal/eventq"
)

var _ store.Notifier = (*Store)(nil)

// notifier is the in-process fan-out of a Store's channels.
type notifier struct {
	mu     sync.Mutex
	subs   map[string]map[*subscription]struct{} // nil once the store is closed
	closed bool
}

type subscription struct {
	n       *notifier
	channel string
	q       *eventq.Queue
	once    sync.Once
}

// Publish implements store.Notifier: msg is queued, in order, for every
// subscription of channel on this Store (other processes see nothing).
func (s *Store) Publish(ctx context.Context, channel string, msg []byte) error {
	const op = "publish"
	if err := s.begin(ctx, op); err != nil {
		return err
	}
	if err := store.CheckChannel(channel); err != nil {
		return err
	}
	if err := store.CheckValue(msg, s.maxValue); err != nil {
		return err
	}
	n := &s.notify
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return closedErr(op)
	}
	for sub := range n.subs[channel] {
		sub.q.Message(append([]byte{}, msg...))
	}
	return nil
}

// Subscribe implements store.Notifier. An in-process subscription is live
// from the start, and stays live unless its consumer falls behind.
func (s *Store) Subscribe(ctx context.Context, channel string) (store.Subscription, error) {
	const op = "subscribe"
	if err := s.begin(ctx, op); err != nil {
		return nil, err
	}
	if err := store.CheckChannel(channel); err != nil {
		return nil, err
	}
	n := &s.notify
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, closedErr(op)
	}
	sub := &subscription{n: n, channel: channel, q: eventq.New()}
	sub.q.SetHealthy(true)
	if n.subs == nil {
		n.subs = map[string]map[*subscription]struct{}{}
	}
	if n.subs[channel] == nil {
		n.subs[channel] = map[*subscription]struct{}{}
	}
	n.subs[channel][sub] = struct{}{}
	return sub, nil
}

// DeliveryBound implements store.Notifier: a message is queued for every
// subscription before Publish returns.
func (s *Store) DeliveryBound() time.Duration { return 0 }

func (sub *subscription) Events() <-chan store.Event { return sub.q.Events() }

func (sub *subscription) Close() error {
	sub.once.Do(func() {
		sub.n.mu.Lock()
		delete(sub.n.subs[sub.channel], sub)
		if len(sub.n.subs[sub.channel]) == 0 {
			delete(sub.n.subs, sub.channel)
		}
		sub.n.mu.Unlock()
		sub.q.Close()
	})
	return nil
}

// close ends every subscription: the store is closing.
func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	subs := n.subs
	n.subs = nil
	n.mu.Unlock()
	for _, m := range subs {
		for sub := range m {
			sub.once.Do(sub.q.Close)
		}
	}
}
