package memory_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/memory"
	"github.com/samlha/samlha/store/storetest"
)

func BenchmarkMemory(b *testing.B) {
	storetest.Benchmark(b, func(b *testing.B) store.Store {
		return memory.New(memory.Options{})
	})
}

// BenchmarkBytesPerEntry measures the heap that the store holds per
// pending login request: 100k entries of the SP's shape (a key of about
// 75 bytes, a value of about 200), live at once.
func BenchmarkBytesPerEntry(b *testing.B) {
	const entries = 100_000
	keys := storetest.BenchKeys(b, entries)
	value := storetest.BenchValue()
	ctx := context.Background()
	var total float64
	for i := 0; i < b.N; i++ {
		before := heapInUse()
		s := memory.New(memory.Options{JanitorInterval: -1})
		for _, k := range keys {
			if err := s.Put(ctx, k, value, time.Hour); err != nil {
				b.Fatalf("Put: %v", err)
			}
		}
		after := heapInUse()
		total += float64(after-before) / entries
		runtime.KeepAlive(s)
		s.Close()
	}
	b.ReportMetric(total/float64(b.N), "B/entry")
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
