package eventq

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/samlha/samlha/store"
)

// next reads one event, failing the test if none comes.
func next(t *testing.T, q *Queue) store.Event {
	t.Helper()
	select {
	case ev, ok := <-q.Events():
		if !ok {
			t.Fatal("Events closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return store.Event{}
}

// drain reads n events and returns them as short strings.
func drain(t *testing.T, q *Queue, n int) []string {
	t.Helper()
	var got []string
	for range n {
		ev := next(t, q)
		if ev.Kind == store.EventMessage {
			got = append(got, string(ev.Payload))
		} else {
			got = append(got, ev.Kind.String())
		}
	}
	return got
}

func TestOrderAndStates(t *testing.T) {
	t.Parallel()
	q := New()
	defer q.Close()
	q.Message([]byte("before"))
	q.SetHealthy(true)
	q.SetHealthy(true) // no change, nothing queued
	q.Message([]byte("a"))
	q.SetHealthy(false)
	q.Message([]byte("b"))
	q.SetHealthy(true)
	q.Message(nil)
	want := []string{"before", "live", "a", "lost", "b", "live", ""}
	if diff := cmp.Diff(want, drain(t, q, len(want))); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

// A Live the consumer has not read, then Lost: neither is delivered. Lost
// then Live are both delivered (the consumer must empty its cache).
func TestUnreadLiveThenLostCancel(t *testing.T) {
	t.Parallel()
	q := New()
	defer q.Close()
	q.mu.Lock() // hold the forwarder back while the states change
	q.setLiveLocked(true)
	q.setLiveLocked(false)
	q.mu.Unlock()
	q.Message([]byte("m"))
	q.SetHealthy(true)
	q.SetHealthy(false)
	q.SetHealthy(true)
	if diff := cmp.Diff([]string{"m", "live"}, drain(t, q, 2)); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

// A consumer that does not read: past MaxMessages, messages are dropped
// and Lost takes their place; Live comes back once it has read half.
func TestOverflow(t *testing.T) {
	t.Parallel()
	q := New()
	defer q.Close()
	q.SetHealthy(true)
	if ev := next(t, q); ev.Kind != store.EventLive {
		t.Fatalf("first event %v, want live", ev.Kind)
	}
	// The forwarder may hold one message in hand, out of the count.
	for i := range MaxMessages + 10 {
		q.Message([]byte(fmt.Sprint(i)))
	}
	if q.Live() {
		t.Fatal("Live() after an overflow")
	}
	q.SetHealthy(true) // healthy, but the consumer must catch up first
	var got []store.Event
	for {
		ev := next(t, q)
		got = append(got, ev)
		if ev.Kind == store.EventLive {
			break
		}
	}
	lost := -1
	for i, ev := range got {
		if ev.Kind == store.EventLost {
			lost = i
		}
	}
	if lost < MaxMessages || lost > MaxMessages+1 {
		t.Fatalf("Lost at position %d of %d events, want right after the %d messages that fit", lost, len(got), MaxMessages)
	}
	for i, ev := range got[:lost] {
		if ev.Kind != store.EventMessage || string(ev.Payload) != fmt.Sprint(i) {
			t.Fatalf("event %d: %v %q, want message %d", i, ev.Kind, ev.Payload, i)
		}
	}
	q.Message([]byte("after"))
	if ev := next(t, q); string(ev.Payload) != "after" {
		t.Fatalf("after catching up: %v %q, want message %q", ev.Kind, ev.Payload, "after")
	}
}

func TestOverflowByBytes(t *testing.T) {
	t.Parallel()
	q := New()
	defer q.Close()
	q.SetHealthy(true)
	next(t, q)
	big := make([]byte, MaxBytes/4+1)
	for range 5 {
		q.Message(big)
	}
	kinds := []store.EventKind{}
	for {
		ev := next(t, q)
		kinds = append(kinds, ev.Kind)
		if ev.Kind == store.EventLost {
			break
		}
	}
	if len(kinds) > 5 {
		t.Fatalf("events %v: want Lost after at most 4 large messages", kinds)
	}
}

func TestCloseClosesEvents(t *testing.T) {
	t.Parallel()
	q := New()
	q.SetHealthy(true)
	q.Message([]byte("unread"))
	q.Close()
	q.Close() // idempotent
	for range q.Events() {
		// Whatever was in hand may still come; the channel must close.
	}
	q.Message([]byte("after close")) // no panic, no effect
	q.SetHealthy(false)
}
