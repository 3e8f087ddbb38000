package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/samlha/samlha/store"
)

// Shape of the benchmarks' entries: a pending login request as the SP
// stores it, a key of about 75 bytes and a value of about 200.
const (
	BenchKeyLen   = 75
	BenchValueLen = 200
	benchTTL      = 10 * time.Minute
	// benchChunk is how many keys a benchmark that consumes keys prepares
	// (or cleans up) at a time, with the timer stopped.
	benchChunk = 1000
	// benchKeySpace is how many distinct keys a benchmark that reuses keys
	// cycles through.
	benchKeySpace = 1 << 12
)

// BenchKeys returns n distinct keys of BenchKeyLen bytes under a random
// prefix.
func BenchKeys(tb testing.TB, n int) []string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("random key prefix: %v", err)
	}
	prefix := "bench-" + hex.EncodeToString(b) + ":req:"
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%0*d", prefix, BenchKeyLen-len(prefix), i)
	}
	return keys
}

// BenchValue returns a value of BenchValueLen bytes.
func BenchValue() []byte {
	v := make([]byte, BenchValueLen)
	for i := range v {
		v[i] = 'a' + byte(i%26)
	}
	return v
}

// Benchmark runs the store benchmarks, each against a new store from open:
// Put, Get, PutIfAbsent, Swap, PutBatch of two writes (a replay
// record and a session, as the ACS wrote them before Commit), Commit (the
// ACS: the tracked login swapped, a replay record and a session written),
// GetMany of three keys, and Put and Get from parallel goroutines. Every
// one reports allocations.
func Benchmark(b *testing.B, open func(b *testing.B) store.Store) {
	value := BenchValue()
	ctx := context.Background()
	run := func(name string, fn func(b *testing.B, s store.Store)) {
		b.Run(name, func(b *testing.B) {
			s := open(b)
			b.Cleanup(func() { s.Close() })
			b.ReportAllocs()
			fn(b, s)
		})
	}
	must := func(b *testing.B, op string, err error) {
		if err != nil {
			b.Fatalf("%s: %v", op, err)
		}
	}
	fill := func(b *testing.B, s store.Store, keys []string) {
		for _, k := range keys {
			must(b, "Put", s.Put(ctx, k, value, benchTTL))
		}
	}

	run("Put", func(b *testing.B, s store.Store) {
		keys := BenchKeys(b, benchKeySpace)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			must(b, "Put", s.Put(ctx, keys[i%len(keys)], value, benchTTL))
		}
	})
	run("Get", func(b *testing.B, s store.Store) {
		keys := BenchKeys(b, benchKeySpace)
		fill(b, s, keys)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			_, err := s.Get(ctx, keys[i%len(keys)])
			must(b, "Get", err)
		}
	})
	run("PutIfAbsent", func(b *testing.B, s store.Store) {
		keys := BenchKeys(b, benchChunk)
		for i := 0; i < b.N; i++ {
			if i > 0 && i%len(keys) == 0 {
				b.StopTimer()
				for _, k := range keys {
					must(b, "Delete", s.Delete(ctx, k))
				}
				b.StartTimer()
			}
			must(b, "PutIfAbsent", s.PutIfAbsent(ctx, keys[i%len(keys)], value, benchTTL))
		}
	})
	run("Swap", func(b *testing.B, s store.Store) {
		keys := BenchKeys(b, benchKeySpace)
		fill(b, s, keys)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			_, err := s.Swap(ctx, keys[i%len(keys)], value, benchTTL)
			must(b, "Swap", err)
		}
	})
	run("PutBatch2", func(b *testing.B, s store.Store) {
		replay := BenchKeys(b, benchChunk)
		sessions := BenchKeys(b, benchKeySpace)
		writes := make([]store.Write, 2)
		for i := 0; i < b.N; i++ {
			if i > 0 && i%len(replay) == 0 {
				b.StopTimer()
				for _, k := range replay {
					must(b, "Delete", s.Delete(ctx, k))
				}
				b.StartTimer()
			}
			writes[0] = store.Write{Key: replay[i%len(replay)], Value: value[:16], TTL: benchTTL, IfAbsent: true}
			writes[1] = store.Write{Key: sessions[i%len(sessions)], Value: value, TTL: benchTTL}
			for _, err := range s.PutBatch(ctx, writes) {
				must(b, "PutBatch", err)
			}
		}
	})
	run("Commit", func(b *testing.B, s store.Store) {
		// The ACS: consume a pending login, record the replay, store the
		// session, with store.CommitTo (the store's own Commit, if any).
		pending := BenchKeys(b, benchChunk)
		replay := BenchKeys(b, benchChunk)
		sessions := BenchKeys(b, benchKeySpace)
		login := append([]byte("P|"), value[2:]...)
		refill := func() {
			for k := range pending {
				must(b, "Put", s.Put(ctx, pending[k], login, benchTTL))
				must(b, "Delete", s.Delete(ctx, replay[k]))
			}
		}
		refill()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if i > 0 && i%len(pending) == 0 {
				b.StopTimer()
				refill()
				b.StartTimer()
			}
			k := i % len(pending)
			_, then, err := store.CommitTo(ctx, s, store.Commit{Key: pending[k], Value: value[:40], TTL: benchTTL, IfPrefix: []byte("P|"),
				Then: []store.Write{
					{Key: replay[k], Value: value[:1], TTL: benchTTL, IfAbsent: true},
					{Key: sessions[i%len(sessions)], Value: value, TTL: benchTTL},
				}})
			must(b, "Commit", errors.Join(append(then, err)...))
		}
	})
	run("GetMany3", func(b *testing.B, s store.Store) {
		// A request's reads: the session (present) and two revocation
		// records (absent), with store.GetMany.
		keys := BenchKeys(b, 3*benchKeySpace)
		for i := 0; i < len(keys); i += 3 {
			must(b, "Put", s.Put(ctx, keys[i], value, benchTTL))
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			j := 3 * (i % benchKeySpace)
			_, err := store.GetMany(ctx, s, keys[j:j+3])
			must(b, "GetMany", err)
		}
	})
	run("PutParallel", func(b *testing.B, s store.Store) {
		keys := BenchKeys(b, benchKeySpace)
		var next atomic.Uint64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := next.Add(1)
				if err := s.Put(ctx, keys[i%uint64(len(keys))], value, benchTTL); err != nil {
					b.Errorf("Put: %v", err)
					return
				}
			}
		})
	})
	run("GetParallel", func(b *testing.B, s store.Store) {
		keys := BenchKeys(b, benchKeySpace)
		fill(b, s, keys)
		var next atomic.Uint64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := next.Add(1)
				if _, err := s.Get(ctx, keys[i%uint64(len(keys))]); err != nil {
					b.Errorf("Get: %v", err)
					return
				}
			}
		})
	})
}
