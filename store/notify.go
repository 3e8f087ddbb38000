package store

import (
	"context"
	"fmt"
	"time"
)

// Notifier is implemented by stores that carry messages from publishers to
// the subscribers of a channel: the invalidation channel that lets every
// replica cache what it reads (sessions, revocations) and drop it the
// moment another replica changes it.
//
// Delivery is at most once per subscription and in publication order, and
// a subscription says when it cannot promise that: it emits EventLost as
// soon as it may have missed a message (its connection failed, its
// liveness went unproven for DeliveryBound, its consumer fell so far
// behind that messages were dropped), and EventLive once it is again
// proven to receive everything published. A consumer that caches trusts
// its cache only between a Live and the next Lost, and empties the cache
// when it reads Live (what was published while it was not live is not
// delivered again). A consumer never serves from its cache a value that
// a message published more than DeliveryBound ago has invalidated.
type Notifier interface {
	// Publish sends msg to the channel's subscriptions. It returns once
	// the store has accepted the message (the moment DeliveryBound
	// counts from); an error means it may or may not have been accepted.
	// A message may be delivered twice where the backend resends a
	// publish whose reply was lost, so messages should be idempotent
	// (an invalidation is).
	Publish(ctx context.Context, channel string, msg []byte) error

	// Subscribe starts a subscription to channel. It fails only for an
	// invalid channel, a done ctx or a closed store; a store that cannot
	// be reached yet gives a subscription that emits Live once it can.
	// ctx bounds Subscribe itself, not the subscription, which lasts
	// until its Close or the store's Close.
	Subscribe(ctx context.Context, channel string) (Subscription, error)

	// DeliveryBound bounds how stale a live subscription can be: a
	// message published at time t has been delivered to every
	// subscription by t + DeliveryBound, or that subscription has emitted
	// Lost by then (both queued behind the events its consumer has not
	// yet read). Zero for an in-process store.
	DeliveryBound() time.Duration
}

// Subscription is one subscriber's view of a channel. Events are queued
// for its consumer up to a bound; past it, messages are dropped and Lost
// is emitted instead, so a slow consumer is never told it is live while it
// misses messages.
type Subscription interface {
	// Events returns the subscription's events, in order. The first is
	// Live, once the subscription is proven (at once in process, after
	// a subscribe and a heartbeat on Redis). The channel is closed when
	// the subscription ends (Close, or the store's Close); a closed
	// channel means Lost.
	Events() <-chan Event
	// Close ends the subscription and closes Events. It is idempotent.
	Close() error
}

// EventKind says what an Event is.
type EventKind uint8

const (
	// EventMessage carries a published message in Payload.
	EventMessage EventKind = iota + 1
	// EventLive: the subscription is proven to receive every message
	// published from now on. Empty the cache, then trust it.
	EventLive
	// EventLost: the subscription may have missed a message. Stop
	// trusting the cache now; Live follows once the subscription is
	// proven again.
	EventLost
)

func (k EventKind) String() string {
	switch k {
	case EventMessage:
		return "message"
	case EventLive:
		return "live"
	case EventLost:
		return "lost"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is one event of a Subscription. Payload (non-nil, maybe empty, for
// a message; nil otherwise) belongs to the consumer.
type Event struct {
	Kind    EventKind
	Payload []byte
}

// MaxChannelLen is the longest channel name, in bytes.
const MaxChannelLen = 256

// CheckChannel returns an error matching ErrInvalid unless channel is 1 to
// MaxChannelLen bytes of ASCII letters, digits and ". _ : -". (The narrow
// alphabet lets a backend embed the name in its own, such as a Redis
// Cluster hash tag, without escaping.)
func CheckChannel(channel string) error {
	if channel == "" || len(channel) > MaxChannelLen {
		return fmt.Errorf("%w: channel name of %d bytes, want 1 to %d", ErrInvalid, len(channel), MaxChannelLen)
	}
	for i := 0; i < len(channel); i++ {
		c := channel[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return fmt.Errorf("%w: channel name %q holds %q: use letters, digits and . _ : -", ErrInvalid, channel, c)
		}
	}
	return nil
}
