package redis_test

import (
	"errors"
	"testing"
	"time"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/redis/redistest"
)

// TestLostReplyIsNotRetried checks that a command that must run once is
// not sent again when its reply is lost: a Swap whose SET XX GET ran but
// whose reply never came must report the store unavailable, not return its
// own value as the one it replaced (which a retry would). Idempotent reads
// are still retried.
func TestLostReplyIsNotRetried(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	s := open(t, "redis://"+proxy.Addr()+"?timeout=2s&pool_size=1")
	ctx := t.Context()
	raw := srv.Client()

	// The first command opens the pooled connection (HELLO and all), so
	// the reply dropped next is the command's own.
	if err := s.Put(ctx, "read", []byte("v"), time.Minute); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if err := raw.Set(ctx, "samlha:swapped", "original", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	proxy.DropNextReply()
	_, err := s.Swap(ctx, "swapped", []byte("new"), time.Minute)
	if proxy.Dropped() != 1 {
		t.Fatalf("the proxy dropped %d replies, want 1", proxy.Dropped())
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Swap whose reply was lost: %v, want ErrUnavailable (a retry would return its own value)", err)
	}
	if v, err := raw.Get(ctx, "samlha:swapped").Result(); err != nil || v != "new" {
		t.Fatalf("GET after the lost Swap = %q, %v; want %q: the server ran SET XX GET", v, err, "new")
	}

	proxy.DropNextReply()
	if err := s.PutIfAbsent(ctx, "replay", []byte("v"), time.Minute); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("PutIfAbsent whose reply was lost: %v, want ErrUnavailable (a retry would say it exists)", err)
	}

	proxy.DropNextReply()
	if _, err := s.Get(ctx, "read"); err != nil {
		t.Fatalf("Get whose first reply was lost: %v, want the value from a retry", err)
	}
	if got := proxy.Dropped(); got != 3 {
		t.Fatalf("the proxy dropped %d replies, want 3", got)
	}
}
