package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/samlha/samlha/store"
)

// Recorded is an event as a Watcher read it, and when.
type Recorded struct {
	store.Event
	At time.Time
}

// Watcher reads a subscription's events as they come, as a consumer with a
// cache would, and keeps them for the test to wait on and check. It stops
// when the subscription's Events channel closes.
type Watcher struct {
	mu     sync.Mutex
	events []Recorded
	live   bool
	closed bool
	change chan struct{} // closed and replaced on each event
}

// Watch starts reading sub's events.
func Watch(sub store.Subscription) *Watcher {
	w := &Watcher{change: make(chan struct{})}
	go func() {
		for ev := range sub.Events() {
			w.mu.Lock()
			w.events = append(w.events, Recorded{Event: ev, At: time.Now()})
			switch ev.Kind {
			case store.EventLive:
				w.live = true
			case store.EventLost:
				w.live = false
			}
			close(w.change)
			w.change = make(chan struct{})
			w.mu.Unlock()
		}
		w.mu.Lock()
		w.closed, w.live = true, false
		close(w.change)
		w.change = make(chan struct{})
		w.mu.Unlock()
	}()
	return w
}

// Events returns the events read so far.
func (w *Watcher) Events() []Recorded {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Recorded(nil), w.events...)
}

// Len returns how many events have been read.
func (w *Watcher) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.events)
}

// Live reports whether the last state event read was Live.
func (w *Watcher) Live() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.live
}

// Wait waits until cond, called under the watcher's lock with the events
// read and whether Events has closed, holds, or fails the test after
// within, saying what it waited for.
func (w *Watcher) Wait(tb testing.TB, within time.Duration, what string, cond func(events []Recorded, closed bool) bool) {
	tb.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		ok, change, n := cond(w.events, w.closed), w.change, len(w.events)
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-change:
		case <-deadline.C:
			tb.Fatalf("no %s within %v; %d events read: %s", what, within, n, w.summary())
		}
	}
}

// WaitFrom waits until an event of kind has been read at index from or
// later, and returns its index.
func (w *Watcher) WaitFrom(tb testing.TB, from int, kind store.EventKind, within time.Duration) int {
	tb.Helper()
	at := -1
	w.Wait(tb, within, kind.String()+" event", func(events []Recorded, _ bool) bool {
		for i := max(from, 0); i < len(events); i++ {
			if events[i].Kind == kind {
				at = i
				return true
			}
		}
		return false
	})
	return at
}

// WaitPayload waits until a message with payload has been read, and
// returns its index.
func (w *Watcher) WaitPayload(tb testing.TB, payload string, within time.Duration) int {
	tb.Helper()
	at := -1
	w.Wait(tb, within, fmt.Sprintf("message %q", payload), func(events []Recorded, _ bool) bool {
		for i, ev := range events {
			if ev.Kind == store.EventMessage && string(ev.Payload) == payload {
				at = i
				return true
			}
		}
		return false
	})
	return at
}

// WaitClosed waits until Events has closed.
func (w *Watcher) WaitClosed(tb testing.TB, within time.Duration) {
	tb.Helper()
	w.Wait(tb, within, "close of Events", func(_ []Recorded, closed bool) bool { return closed })
}

// summary describes the events read, runs of messages counted.
func (w *Watcher) summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	msgs := 0
	flush := func() {
		if msgs > 0 {
			parts = append(parts, fmt.Sprintf("%d messages", msgs))
			msgs = 0
		}
	}
	for _, ev := range w.events {
		if ev.Kind == store.EventMessage {
			msgs++
			continue
		}
		flush()
		parts = append(parts, ev.Kind.String())
	}
	flush()
	if w.closed {
		parts = append(parts, "closed")
	}
	return strings.Join(parts, ", ")
}

// Sequenced returns the number n of a message whose payload is prefix
// followed by n, or false.
func Sequenced(ev store.Event, prefix string) (int, bool) {
	if ev.Kind != store.EventMessage || !strings.HasPrefix(string(ev.Payload), prefix) {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimPrefix(string(ev.Payload), prefix))
	return n, err == nil
}

// CheckSequence checks the promise a cache relies on, for the messages
// numbered prefix0, prefix1, ... that one publisher sent in order: they
// arrive in order (a message repeated at once is allowed: a resent
// publish); between a Live and the next Lost none is skipped, except at
// the first message after a Live, which may skip those published while the
// subscription was not live. published, if not nil, gives the time each
// publish began: a message whose publish began after a Live was read must
// arrive unless a Lost is read after it, so the first message after a
// Live may skip only messages whose publish began before that Live.
func CheckSequence(events []Recorded, prefix string, published func(n int) (time.Time, bool)) error {
	live, contiguous, seen := false, false, -1 // seen: the highest number read
	var liveAt time.Time
	for i, ev := range events {
		switch ev.Kind {
		case store.EventLive:
			live, contiguous, liveAt = true, false, ev.At
			continue
		case store.EventLost:
			live = false
			continue
		}
		n, ok := Sequenced(ev.Event, prefix)
		if !ok {
			continue
		}
		switch {
		case n < seen:
			return fmt.Errorf("event %d: message %d after message %d: out of order", i, n, seen)
		case n == seen:
			continue // a resent publish
		case live && contiguous && n > seen+1:
			return fmt.Errorf("event %d: message %d after message %d while live: %d to %d were skipped", i, n, seen, seen+1, n-1)
		case live && !contiguous && published != nil:
			// The first message after a Live: nothing whose publish
			// began after that Live was read may be skipped.
			for m := n - 1; m > seen; m-- {
				if at, ok := published(m); ok && !at.Before(liveAt) {
					return fmt.Errorf("event %d: message %d is the first after a Live read at %s, but message %d, published after that, was skipped",
						i, n, liveAt.Format(time.StampMicro), m)
				}
			}
		}
		seen = n
		contiguous = live
	}
	return nil
}

// --- the suite's notifier tests ---

func notifier(t *testing.T, s store.Store) store.Notifier {
	t.Helper()
	n, ok := s.(store.Notifier)
	if !ok {
		t.Skipf("%T does not implement store.Notifier", s)
	}
	return n
}

// subscribe subscribes to channel, closing the subscription when the test
// ends, and waits until it is live.
func subscribe(t *testing.T, n store.Notifier, channel string) (store.Subscription, *Watcher) {
	t.Helper()
	sub, err := n.Subscribe(t.Context(), channel)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", channel, err)
	}
	t.Cleanup(func() {
		if err := sub.Close(); err != nil {
			t.Errorf("Subscription.Close: %v", err)
		}
	})
	w := Watch(sub)
	if at := w.WaitFrom(t, 0, store.EventLive, waitFor); at != 0 {
		t.Fatalf("the subscription's first event is not Live: %s", w.summary())
	}
	return sub, w
}

func mustPublish(t *testing.T, n store.Notifier, channel, msg string) {
	t.Helper()
	if err := n.Publish(t.Context(), channel, []byte(msg)); err != nil {
		t.Fatalf("Publish(%q, %q): %v", channel, msg, err)
	}
}

// messages returns the payloads of the messages among events.
func messages(events []Recorded) []string {
	var out []string
	for _, ev := range events {
		if ev.Kind == store.EventMessage {
			out = append(out, string(ev.Payload))
		}
	}
	return out
}

func testNotify(t *testing.T, s store.Store, k keys) {
	n := notifier(t, s)
	if n.DeliveryBound() < 0 {
		t.Fatalf("DeliveryBound() = %v, want zero or more", n.DeliveryBound())
	}
	ch, other := k.prefix+"ch", k.prefix+"other"
	_, w1 := subscribe(t, n, ch)
	_, w2 := subscribe(t, n, ch)
	_, wo := subscribe(t, n, other)
	want := []string{"first", "", "\x00\xff binary\r\n", strings.Repeat("x", 64<<10)}
	for i := range 50 {
		want = append(want, fmt.Sprint("m", i))
	}
	for _, m := range want {
		mustPublish(t, n, ch, m)
	}
	mustPublish(t, n, other, "for other")
	for i, w := range []*Watcher{w1, w2} {
		w.WaitPayload(t, want[len(want)-1], waitFor)
		if diff := cmp.Diff(want, messages(w.Events())); diff != "" {
			t.Fatalf("subscriber %d: messages (-want +got):\n%s", i+1, diff)
		}
		if !w.Live() {
			t.Fatalf("subscriber %d: not live: %s", i+1, w.summary())
		}
	}
	wo.WaitPayload(t, "for other", waitFor)
	if diff := cmp.Diff([]string{"for other"}, messages(wo.Events())); diff != "" {
		t.Fatalf("subscriber of another channel: messages (-want +got):\n%s", diff)
	}
	// A message is the consumer's to keep.
	for _, ev := range w1.Events() {
		if ev.Kind == store.EventMessage && len(ev.Payload) > 0 {
			ev.Payload[0] ^= 0xff
		}
	}
	if got := messages(w2.Events()); got[0] != "first" {
		t.Fatalf("a payload changed by one subscriber's consumer changed another's: %q", got[0])
	}
}

// testNotifyConcurrent: publishers at once, each in order; every
// subscriber gets every message once, each publisher's in its order.
func testNotifyConcurrent(t *testing.T, s store.Store, k keys) {
	const publishers, each = 8, 40
	n := notifier(t, s)
	ch := k.prefix + "ch"
	_, w1 := subscribe(t, n, ch)
	_, w2 := subscribe(t, n, ch)
	ctx := loadContext(t)
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				if err := n.Publish(ctx, ch, fmt.Appendf(nil, "p%d-%d", p, i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}
	for i, w := range []*Watcher{w1, w2} {
		w.Wait(t, waitFor, "every message", func(events []Recorded, _ bool) bool {
			return len(messages(events)) >= publishers*each
		})
		events := w.Events()
		if got := len(messages(events)); got != publishers*each {
			t.Fatalf("subscriber %d: %d messages, want %d", i+1, got, publishers*each)
		}
		for p := range publishers {
			if err := CheckSequence(events, fmt.Sprintf("p%d-", p), nil); err != nil {
				t.Fatalf("subscriber %d, publisher %d: %v", i+1, p, err)
			}
		}
		seen := map[string]bool{}
		for _, m := range messages(events) {
			if seen[m] {
				t.Fatalf("subscriber %d: message %q delivered twice", i+1, m)
			}
			seen[m] = true
		}
		if !w.Live() {
			t.Fatalf("subscriber %d: not live: %s", i+1, w.summary())
		}
	}
}

// testNotifySlowConsumer: a consumer that does not read while thousands of
// messages are published is never left live with a gap: it reads messages
// in order, and, if the backend dropped some, Lost and then Live, after
// which it gets every message.
func testNotifySlowConsumer(t *testing.T, s store.Store, k keys) {
	const burst = 3000
	n := notifier(t, s)
	ch := k.prefix + "ch"
	sub, err := n.Subscribe(t.Context(), ch)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer sub.Close()
	// Read the first event (Live), then nothing until the burst is out.
	select {
	case ev := <-sub.Events():
		if ev.Kind != store.EventLive {
			t.Fatalf("first event %v, want live", ev.Kind)
		}
	case <-time.After(waitFor):
		t.Fatal("no Live")
	}
	ctx := loadContext(t)
	for i := range burst {
		if err := n.Publish(ctx, ch, fmt.Appendf(nil, "s%d", i)); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	w := Watch(sub)
	// Either every message arrives, or some were dropped behind a Lost and
	// a Live follows. Then a last message must arrive.
	w.Wait(t, waitFor, "the burst's end or Lost and Live", func(events []Recorded, _ bool) bool {
		lost := false
		for _, ev := range events {
			if m, ok := Sequenced(ev.Event, "s"); ok && m == burst-1 {
				return true
			}
			if ev.Kind == store.EventLost {
				lost = true
			}
			if lost && ev.Kind == store.EventLive {
				return true
			}
		}
		return false
	})
	mustPublish(t, n, ch, fmt.Sprint("s", burst))
	w.WaitPayload(t, fmt.Sprint("s", burst), waitFor)
	if err := CheckSequence(w.Events(), "s", nil); err != nil {
		t.Fatalf("%v\nevents: %s", err, w.summary())
	}
}

func testNotifyClose(t *testing.T, s store.Store, k keys) {
	n := notifier(t, s)
	ch := k.prefix + "ch"
	sub, w := subscribe(t, n, ch)
	if err := sub.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	w.WaitClosed(t, waitFor)
	if err := sub.Close(); err != nil {
		t.Fatalf("second Close: %v, want nil (Close is idempotent)", err)
	}
	mustPublish(t, n, ch, "after close") // no subscriber; not an error

	// The store's Close ends every subscription.
	_, w = subscribe(t, n, ch)
	if err := s.Close(); err != nil {
		t.Fatalf("store Close: %v", err)
	}
	w.WaitClosed(t, waitFor)
	if err := n.Publish(t.Context(), ch, []byte("x")); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Publish after the store's Close: %v, want ErrClosed", err)
	}
	if _, err := n.Subscribe(t.Context(), ch); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Subscribe after the store's Close: %v, want ErrClosed", err)
	}
}

func testNotifyInvalid(t *testing.T, s store.Store, _ keys) {
	n := notifier(t, s)
	for _, ch := range []string{"", "a{b}", "a b", "ключ", "new\nline", strings.Repeat("c", store.MaxChannelLen+1)} {
		if err := n.Publish(t.Context(), ch, []byte("x")); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Publish to channel %q: %v, want ErrInvalid", ch, err)
		}
		if sub, err := n.Subscribe(t.Context(), ch); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Subscribe to channel %q: %v, want ErrInvalid", ch, err)
			if sub != nil {
				sub.Close()
			}
		}
	}
	if err := store.CheckChannel("Az09._:-" + strings.Repeat("c", store.MaxChannelLen-8)); err != nil {
		t.Errorf("CheckChannel of a valid name of %d bytes: %v", store.MaxChannelLen, err)
	}
}

// notifyCalls are the Notifier's methods as calls, for the done-context
// and closed-store tests.
func notifyCalls(s store.Store, channel string) []call {
	n, ok := s.(store.Notifier)
	if !ok {
		return nil
	}
	return []call{
		{"Publish", func(ctx context.Context) error { return n.Publish(ctx, channel, []byte("m")) }},
		{"Subscribe", func(ctx context.Context) error {
			sub, err := n.Subscribe(ctx, channel)
			if sub != nil {
				sub.Close()
			}
			return err
		}},
	}
}
