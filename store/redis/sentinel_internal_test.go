package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

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
