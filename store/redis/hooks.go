package redis

import (
	"context"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// hooks are the hooks added with AddHook, kept to be added to a client
// that replaces the one in use (after a Sentinel failover).
type hooks struct {
	mu    sync.Mutex
	added []goredis.Hook
}

// AddHook adds h to the store's go-redis client, and to every client that
// replaces it later (after a Sentinel failover). A test counts the store's
// round trips with it: each ProcessHook call is one command sent and
// answered, each ProcessPipelineHook call one pipeline (on a Cluster, one
// round trip to each node it involves, sent at once; a redirection the
// cluster client follows is not counted again). The store's own
// background calls (heartbeats, Sentinel polls) run under a context for
// which IsBackground is true. redistest.Counter is such a hook.
func (s *Store) AddHook(h goredis.Hook) {
	s.hooks.mu.Lock()
	defer s.hooks.mu.Unlock()
	s.hooks.added = append(s.hooks.added, h)
	s.cli().AddHook(h)
}

// addHooksTo adds the hooks added so far to c, a client about to replace
// the one in use. The caller holds s.hooks.mu.
func (s *Store) addHooksTo(c goredis.UniversalClient) {
	for _, h := range s.hooks.added {
		c.AddHook(h)
	}
}

type backgroundKey struct{}

// background marks ctx as the store's own background work.
func background(ctx context.Context) context.Context {
	return context.WithValue(ctx, backgroundKey{}, true)
}

// IsBackground reports whether ctx is that of a call the store makes on
// its own (a heartbeat of a subscription, a poll of the Sentinels) rather
// than for one of its caller's operations.
func IsBackground(ctx context.Context) bool {
	b, _ := ctx.Value(backgroundKey{}).(bool)
	return b
}
