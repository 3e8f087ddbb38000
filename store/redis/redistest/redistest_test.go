package redistest_test

import (
	"strings"
	"testing"

	"github.com/samlha/samlha/store/redis/redistest"
)

func TestServerLifecycle(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.WithPassword("s3cret"))
	c := s.Client()
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET on a new server: %v", err)
	}
	if !strings.Contains(s.URL(), ":s3cret@"+s.Addr()) {
		t.Fatalf("URL() = %q, want the password and address in it", s.URL())
	}
	s.Restart()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS k after Restart = %d, %v; want 0: a restarted server starts empty", n, err)
	}
	s.Kill()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Kill succeeded")
	}
	s.Restart()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Kill and Restart: %v", err)
	}
	s.Stop()
	s.Stop() // idempotent
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	if got := len(c.Addrs()); got != 3 {
		t.Fatalf("StartCluster(3) has %d nodes", got)
	}
	if !strings.HasPrefix(c.URL(), "redis-cluster://127.0.0.1:") || strings.Count(c.URL(), ",") != 2 {
		t.Fatalf("URL() = %q, want redis-cluster:// and three addresses", c.URL())
	}
	slots, err := c.Nodes[1].Client().ClusterSlots(t.Context()).Result()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	covered := 0
	for _, s := range slots {
		covered += int(s.End - s.Start + 1)
	}
	if len(slots) != 3 || covered != 16384 {
		t.Fatalf("CLUSTER SLOTS: %d ranges covering %d slots, want 3 covering 16384", len(slots), covered)
	}
}
