package redis_test

import (
	"testing"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/redis/redistest"
	"github.com/samlha/samlha/store/storetest"
)

// BenchmarkRedis measures each operation against a private redis-server on
// loopback: one round trip each (two writes in one for PutBatch2).
func BenchmarkRedis(b *testing.B) {
	srv := redistest.Start(b)
	storetest.Benchmark(b, func(b *testing.B) store.Store {
		s, err := store.Open(b.Context(), srv.URL(), nil)
		if err != nil {
			b.Fatalf("store.Open: %v", err)
		}
		return s
	})
}

// BenchmarkRedisCluster does the same against a private 3-master cluster.
func BenchmarkRedisCluster(b *testing.B) {
	c := redistest.StartCluster(b, 3)
	storetest.Benchmark(b, func(b *testing.B) store.Store {
		s, err := store.Open(b.Context(), c.URL(), nil)
		if err != nil {
			b.Fatalf("store.Open: %v", err)
		}
		return s
	})
}
