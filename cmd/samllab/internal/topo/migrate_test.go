package topo

import (
	"slices"
	"testing"
)

func TestRedisArgs(t *testing.T) {
	in := []string{"--listen", "127.0.0.1:1", "--store", "memory", "--store-timeout", "500ms", "--store-url", "memory://", "--store-handoff", "redis://127.0.0.1:2/0", "--log-level", "info"}
	got, err := redisArgs(in, "redis://127.0.0.1:2/0")
	want := []string{"--listen", "127.0.0.1:1", "--store", "redis", "--store-timeout", "500ms", "--store-url", "redis://127.0.0.1:2/0", "--log-level", "info"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("redisArgs: %q, %v; want %q", got, err, want)
	}
	if _, err := redisArgs(want, "redis://127.0.0.1:2/0"); err == nil {
		t.Error("a replica already on redis was migrated again")
	}
}
