package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

func TestEventMaster(t *testing.T) {
	t.Parallel()
	for payload, want := range map[string]string{
		"slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379": "mymaster",
		"master mymaster 127.0.0.1 6379":                                "mymaster",
		"sentinel 1f2e 127.0.0.1 26379 @ other 127.0.0.1 6379":          "other",
		"":              "",
		"slave x y z @": "",
	} {
		if got := eventMaster(strings.Fields(payload)); got != want {
			t.Errorf("eventMaster(%q) = %q, want %q", payload, got, want)
		}
	}
}

// redisError is an error reply as go-redis reports it.
type redisError string

func (e redisError) Error() string { return string(e) }
func (redisError) RedisError()     {}

// Only an error that shows the command never ran may be sent again.
func TestNeverRan(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{refused, true},
		{fmt.Errorf("wrapped: %w", refused), true},
		{goredis.ErrPoolTimeout, true},
		{goredis.ErrClosed, true},
		{fmt.Errorf("%w: no Sentinel", errNoMaster), true},
		{redisError("READONLY You can't write against a read only replica."), true},
		{redisError("NOREPLICAS Not enough good replicas to write."), true},
		{redisError("LOADING Redis is loading the dataset in memory"), true},
		{redisError("MASTERDOWN Link with MASTER is down"), true},
		// The command may have run: its reply was lost.
		{io.EOF, false},
		{&net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}, false},
		{context.DeadlineExceeded, false},
		{redisError("ERR something else"), false},
		{goredis.Nil, false},
	} {
		if got := neverRan(tc.err); got != tc.want {
			t.Errorf("neverRan(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A failover holds commands from its first step (+try-failover), not only
// from the step before the promotion: a store that heard the later event
// one Sentinel tick too late lost the old master's last writes. A later
// step of the same failover does not extend the hold; an abort ends it.
func TestHoldFromTheFailoversFirstStep(t *testing.T) {
	t.Parallel()
	s := &Store{logger: slog.New(slog.DiscardHandler)}
	f := &follower{s: s, name: "mymaster", changed: make(chan struct{})}
	held := func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return time.Now().Before(f.heldUntil())
	}
	master := "master mymaster 127.0.0.1 6379"
	const s1, s2 = "127.0.0.1:26379", "127.0.0.1:26380"
	f.event(s1, "+try-failover", "master other 127.0.0.1 6390")
	if held() {
		t.Fatal("another master's failover holds this store's commands")
	}
	f.event(s1, "+try-failover", master)
	if !held() {
		t.Fatal("+try-failover did not hold commands")
	}
	f.mu.Lock()
	first := f.heldUntil()
	f.mu.Unlock()
	f.event(s1, "+elected-leader", master)
	f.event(s1, "+failover-state-select-slave", master)
	f.event(s1, "+failover-state-send-slaveof-noone", master)
	f.mu.Lock()
	later := f.heldUntil()
	f.mu.Unlock()
	if !later.Equal(first) {
		t.Errorf("a later step moved the hold's end from %v to %v", first, later)
	}
	f.event(s1, "-failover-abort-no-good-slave", master)
	if held() {
		t.Fatal("an abort did not end the hold")
	}
	// A store that connected midway holds from the step it hears.
	f.event(s1, "+failover-state-send-slaveof-noone", master)
	if !held() {
		t.Fatal("+failover-state-send-slaveof-noone did not hold commands")
	}
	// Two Sentinels ask for votes; the one that loses the election aborts,
	// and the winner goes on promoting: still held. The winner's end ends
	// it.
	f.event(s1, "-failover-abort-no-good-slave", master)
	f.event(s1, "+try-failover", master)
	f.event(s2, "+try-failover", master)
	f.event(s1, "-failover-abort-not-elected", master)
	if !held() {
		t.Fatal("the abort of the Sentinel that lost the election ended the hold of the one that won")
	}
	f.event(s2, "+failover-state-send-slaveof-noone", master)
	f.event(s2, "+failover-end", master)
	if held() {
		t.Fatal("the winner's +failover-end did not end the hold")
	}
	for _, ev := range failoverEvents {
		if holdFrom[ev] || ev == "+switch-master" || strings.HasPrefix(ev, "-failover-abort") || strings.HasPrefix(ev, "+failover-end") {
			continue
		}
		t.Errorf("%s is listened to but neither holds nor ends a hold", ev)
	}
	for ev := range holdFrom {
		if !slices.Contains(failoverEvents, ev) {
			t.Errorf("%s holds commands but is not subscribed to", ev)
		}
	}
}
