package redis_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/redis/redistest"
)

// dropProxy relays TCP connections to a server; when armed, it drops the
// next reply the server sends on any connection and closes that client
// connection, as a network failure after the server acted would.
type dropProxy struct {
	ln      net.Listener
	target  string
	armed   atomic.Bool
	dropped atomic.Int32
	wg      sync.WaitGroup
}

func startDropProxy(t *testing.T, target string) *dropProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &dropProxy{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *dropProxy) serve() {
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		conns = append(conns, client, server)
		p.wg.Go(func() { io.Copy(server, client); server.Close() })
		p.wg.Go(func() {
			defer client.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := server.Read(buf)
				if n > 0 && p.armed.CompareAndSwap(true, false) {
					p.dropped.Add(1)
					return // the reply is lost, and the connection with it
				}
				if n > 0 {
					if _, err := client.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		})
	}
}

// TestLostReplyIsNotRetried checks that a command that must run once is
// not sent again when its reply is lost: a Swap whose SET XX GET ran but
// whose reply never came must report the store unavailable, not return its
// own value as the one it replaced (which a retry would). Idempotent reads
// are still retried.
func TestLostReplyIsNotRetried(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	proxy := startDropProxy(t, srv.Addr())
	s := open(t, "redis://"+proxy.ln.Addr().String()+"?timeout=2s&pool_size=1")
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
	proxy.armed.Store(true)
	_, err := s.Swap(ctx, "swapped", []byte("new"), time.Minute)
	if proxy.dropped.Load() != 1 {
		t.Fatalf("the proxy dropped %d replies, want 1", proxy.dropped.Load())
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Swap whose reply was lost: %v, want ErrUnavailable (a retry would return its own value)", err)
	}
	if v, err := raw.Get(ctx, "samlha:swapped").Result(); err != nil || v != "new" {
		t.Fatalf("GET after the lost Swap = %q, %v; want %q: the server ran SET XX GET", v, err, "new")
	}

	proxy.armed.Store(true)
	if err := s.PutIfAbsent(ctx, "replay", []byte("v"), time.Minute); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("PutIfAbsent whose reply was lost: %v, want ErrUnavailable (a retry would say it exists)", err)
	}

	proxy.armed.Store(true)
	if _, err := s.Get(ctx, "read"); err != nil {
		t.Fatalf("Get whose first reply was lost: %v, want the value from a retry", err)
	}
	if got := proxy.dropped.Load(); got != 3 {
		t.Fatalf("the proxy dropped %d replies, want 3", got)
	}
}
