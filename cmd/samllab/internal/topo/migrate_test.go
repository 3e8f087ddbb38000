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

func TestMemoryArgs(t *testing.T) {
	in := []string{"--listen", "127.0.0.1:1", "--store", "redis", "--store-url", "redis://127.0.0.1:2/0", "--log-level", "info"}
	got, err := memoryArgs(in, "redis://127.0.0.1:2/0")
	want := []string{"--listen", "127.0.0.1:1", "--store", "memory", "--store-url", "memory://", "--store-handoff", "redis://127.0.0.1:2/0", "--log-level", "info"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("memoryArgs: %q, %v; want %q", got, err, want)
	}
	if _, err := memoryArgs(want, "redis://127.0.0.1:2/0"); err == nil {
		t.Error("a memory replica was migrated back again")
	}
	// And there again: the two rewrites undo each other.
	if there, err := redisArgs(got, "redis://127.0.0.1:2/0"); err != nil || !slices.Equal(there, in) {
		t.Errorf("redisArgs(memoryArgs(x)) = %q, %v; want %q", there, err, in)
	}
}

func TestAcceptStatelessArgs(t *testing.T) {
	in := []string{"--listen", "127.0.0.1:1", "--store", "stateless", "--store-timeout", "500ms", "--store-handoff", "redis://127.0.0.1:2/0", "--log-level", "info"}
	got, err := acceptStatelessArgs(in, "redis://127.0.0.1:2/0")
	want := []string{"--listen", "127.0.0.1:1", "--store", "redis", "--store-url", "redis://127.0.0.1:2/0", "--accept-stateless", "--store-timeout", "500ms", "--log-level", "info"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("acceptStatelessArgs: %q, %v; want %q", got, err, want)
	}
	if _, err := acceptStatelessArgs(want, "redis://127.0.0.1:2/0"); err == nil {
		t.Error("a replica already on redis was migrated again")
	}
}
