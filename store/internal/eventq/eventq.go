// Package eventq is the event queue behind a store.Subscription: ordered,
// bounded, and honest about what it drops.
//
// The producer (a backend's receive loop, or an in-process publisher)
// reports messages and whether the subscription is healthy (proven to
// receive everything published); a goroutine hands the events to the
// consumer in order. Live and Lost are queued on each change of health, so
// the consumer learns them in order with the messages. When the consumer
// falls behind by more than the queue's bound, further messages are
// dropped and Lost is queued in their place; once the consumer has caught
// up to half the bound, Live is queued again if the producer is healthy,
// and the consumer (which empties its cache on Live) has lost nothing that
// matters. Memory is bounded: at most MaxMessages messages of at most
// MaxBytes in all, and never more than two state events between two
// messages.
package eventq

import (
	"sync"

	"github.com/samlha/samlha/store"
)

// Bounds of a queue: past either, messages are dropped and Lost is queued.
const (
	MaxMessages = 1024
	MaxBytes    = 1 << 20
)

// Queue is one subscription's queue. Create it with New.
type Queue struct {
	mu       sync.Mutex
	buf      []store.Event
	msgs     int // messages in buf
	bytes    int // their payloads' bytes
	healthy  bool
	live     bool // the last state queued is Live
	overflow bool // messages were dropped; Live waits for room
	closed   bool

	wake     chan struct{}
	out      chan store.Event
	done     chan struct{}
	finished chan struct{}
}

// New returns a queue whose producer is not yet healthy, with its
// forwarding goroutine running until Close.
func New() *Queue {
	q := &Queue{
		wake:     make(chan struct{}, 1),
		out:      make(chan store.Event),
		done:     make(chan struct{}),
		finished: make(chan struct{}),
	}
	go q.forward()
	return q
}

// Events returns the consumer's channel, closed after Close.
func (q *Queue) Events() <-chan store.Event { return q.out }

// Message queues a message whose payload the queue now owns, or drops it
// (queueing Lost if the consumer was live) when the queue is full.
func (q *Queue) Message(payload []byte) {
	if payload == nil {
		payload = []byte{}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if q.msgs >= MaxMessages || q.bytes+len(payload) > MaxBytes {
		q.overflow = true
		q.setLiveLocked(false)
		return
	}
	q.msgs++
	q.bytes += len(payload)
	q.pushLocked(store.Event{Kind: store.EventMessage, Payload: payload})
}

// SetHealthy reports whether the producer is proven to receive every
// message published: true queues Live (unless the consumer must first
// catch up), false queues Lost, each only on a change.
func (q *Queue) SetHealthy(healthy bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.healthy = healthy
	q.setLiveLocked(healthy && !q.overflow)
}

// Live reports whether the last state queued is Live.
func (q *Queue) Live() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.live
}

func (q *Queue) setLiveLocked(live bool) {
	if live == q.live {
		return
	}
	q.live = live
	if !live && len(q.buf) > 0 && q.buf[len(q.buf)-1].Kind == store.EventLive {
		// A Live the consumer has not read, followed by Lost: as if
		// neither had been queued.
		q.buf = q.buf[:len(q.buf)-1]
		return
	}
	kind := store.EventLost
	if live {
		kind = store.EventLive
	}
	q.pushLocked(store.Event{Kind: kind})
}

func (q *Queue) pushLocked(ev store.Event) {
	q.buf = append(q.buf, ev)
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// forward hands events to the consumer until Close, then closes Events.
func (q *Queue) forward() {
	defer close(q.finished)
	defer close(q.out)
	for {
		q.mu.Lock()
		if len(q.buf) == 0 {
			q.mu.Unlock()
			select {
			case <-q.wake:
				continue
			case <-q.done:
				return
			}
		}
		ev := q.buf[0]
		q.buf[0] = store.Event{}
		q.buf = q.buf[1:]
		if len(q.buf) == 0 {
			q.buf = nil // let the backing array go
		}
		if ev.Kind == store.EventMessage {
			q.msgs--
			q.bytes -= len(ev.Payload)
		}
		if q.overflow && q.msgs <= MaxMessages/2 && q.bytes <= MaxBytes/2 {
			q.overflow = false
			q.setLiveLocked(q.healthy)
		}
		q.mu.Unlock()
		select {
		case q.out <- ev:
		case <-q.done:
			return
		}
	}
}

// Close stops the queue: events not yet read are dropped, and Events is
// closed. It is idempotent.
func (q *Queue) Close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		<-q.finished
		return
	}
	q.closed = true
	q.buf = nil
	q.mu.Unlock()
	close(q.done)
	<-q.finished
}
