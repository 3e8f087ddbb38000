package redistest_test

import (
	"fmt"
	"runtime"
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

// recorder is a testing.TB that records Skipf and Fatalf instead of acting
// on them, ending the goroutine as they would.
type recorder struct {
	testing.TB
	skipped, fatal string
}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// startWith runs Start with a recorder and returns the server (nil if
// Start skipped or failed) and the recorder.
func startWith(t *testing.T, opts ...redistest.Option) (*redistest.Server, *recorder) {
	r := &recorder{TB: t}
	var s *redistest.Server
	done := make(chan struct{})
	go func() {
		defer close(done)
		s = redistest.Start(r, opts...)
	}()
	<-done
	return s, r
}

// TestWithoutRedisServer checks what Start does when redis-server is not
// on PATH. It changes the environment, so it does not run in parallel.
func TestWithoutRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())

	t.Setenv("REDIS_URL", "")
	t.Setenv("CI", "")
	if _, r := startWith(t); !strings.Contains(r.skipped, "redis-server is not on PATH") || r.fatal != "" {
		t.Errorf("without redis-server and REDIS_URL: skipped %q, failed %q; want a skip that says why", r.skipped, r.fatal)
	}
	t.Setenv("CI", "true")
	if _, r := startWith(t); !strings.Contains(r.fatal, "CI=true") || r.skipped != "" {
		t.Errorf("without redis-server and REDIS_URL under CI=true: skipped %q, failed %q; want a failure", r.skipped, r.fatal)
	}

	t.Setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
	s1, r := startWith(t)
	if s1 == nil {
		t.Fatalf("with REDIS_URL: Start skipped %q, failed %q; want the REDIS_URL server", r.skipped, r.fatal)
	}
	s2, _ := startWith(t)
	if !strings.HasPrefix(s1.URL(), "redis://127.0.0.1:6379/0?prefix=redistest-") || s1.URL() == s2.URL() {
		t.Errorf("with REDIS_URL: URLs %q and %q; want REDIS_URL with a prefix unique to each", s1.URL(), s2.URL())
	}
	if s1.Addr() != "127.0.0.1:6379" {
		t.Errorf("with REDIS_URL: Addr() = %q", s1.Addr())
	}
	// A test that needs its own server is skipped, not run against the
	// shared one.
	t.Setenv("CI", "")
	if _, r := startWith(t, redistest.WithPassword("x")); r.skipped == "" {
		t.Errorf("with REDIS_URL, a password-protected server: skipped %q, failed %q; want a skip", r.skipped, r.fatal)
	}
}
