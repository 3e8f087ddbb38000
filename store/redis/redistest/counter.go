package redistest

import (
	"context"
	"net"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/samlha/samlha/store/redis"
)

// Counter is a go-redis hook that counts a store's round trips: one per
// command processed, one per pipeline. Add it with (*redis.Store).AddHook;
// the store's own background calls (heartbeats, Sentinel polls) are left
// out. It is safe for concurrent use.
type Counter struct {
	mu    sync.Mutex
	trips [][]string
}

var _ goredis.Hook = (*Counter)(nil)

// DialHook implements goredis.Hook: dials are not counted.
func (c *Counter) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

// ProcessHook implements goredis.Hook: one round trip per command.
func (c *Counter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		c.record(ctx, cmd)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements goredis.Hook: one round trip per
// pipeline.
func (c *Counter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		c.record(ctx, cmds...)
		return next(ctx, cmds)
	}
}

func (c *Counter) record(ctx context.Context, cmds ...goredis.Cmder) {
	if redis.IsBackground(ctx) {
		return
	}
	names := make([]string, len(cmds))
	for i, cmd := range cmds {
		names[i] = cmd.Name()
	}
	c.mu.Lock()
	c.trips = append(c.trips, names)
	c.mu.Unlock()
}

// Count returns the round trips counted since the last Reset.
func (c *Counter) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.trips)
}

// Trips returns the command names of each round trip counted since the
// last Reset, in order.
func (c *Counter) Trips() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]string(nil), c.trips...)
}

// Reset forgets the round trips counted so far.
func (c *Counter) Reset() {
	c.mu.Lock()
	c.trips = nil
	c.mu.Unlock()
}
