package redis_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/redis/redistest"
)

// TestSentinelFailover kills the master behind a Sentinel: until the
// Sentinel promotes the replica, calls fail as unavailable (never as
// absent); after it, the store works again through the same URL, and
// holds what was replicated.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	master := redistest.Start(t)
	host, port, _ := strings.Cut(master.Addr(), ":")
	replica := redistest.Start(t, redistest.WithArgs("--replicaof", host, port))
	waitFor(t, 10*time.Second, "the replica to replicate", func() bool {
		info, err := replica.Client().Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	sentinel := redistest.StartSentinel(t, master, "samlha-master")
	waitFor(t, 10*time.Second, "the Sentinel to know the replica", func() bool {
		replicas, err := sentinel.Client().Do(ctx, "SENTINEL", "REPLICAS", "samlha-master").Slice()
		return err == nil && len(replicas) == 1
	})

	s := open(t, with(sentinel.URL(), "timeout=500ms"))
	if err := s.Put(ctx, "k", []byte("v"), time.Hour); err != nil {
		t.Fatalf("Put before the failover: %v", err)
	}
	waitFor(t, 10*time.Second, "the key to reach the replica", func() bool {
		n, err := replica.Client().Exists(ctx, "samlha:k").Result()
		return err == nil && n == 1
	})

	master.Kill()
	waitFor(t, 60*time.Second, "the store to work again after the failover", func() bool {
		_, err := s.Get(ctx, "k")
		if err != nil && !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Get during the failover: %v, want a value or ErrUnavailable", err)
		}
		return err == nil
	})
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after the failover: %v", err)
	}
	if got, err := s.Get(ctx, "k"); err != nil || string(got) != "v" {
		t.Fatalf("Get after the failover = %q, %v; want the replicated value", got, err)
	}
}

// waitFor polls cond until it holds, failing the test after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
