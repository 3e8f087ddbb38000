package loginstate

import (
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/samlha/samlha/sp/keyring/keyringtest"
	"github.com/samlha/samlha/store/memory"
)

// BenchmarkPendingLoginMemory measures the heap a memory store holds per
// login in progress: the tracked request exactly as begin stores it (key
// "req:" + RelayState, compact value), in a store holding 100k of them.
// Goal: at most 512 bytes per pending login.
//
//	go test -run '^$' -bench PendingLoginMemory ./sp/loginstate
func BenchmarkPendingLoginMemory(b *testing.B) {
	const n = 100_000
	for range b.N {
		st := memory.New(memory.Options{JanitorInterval: -1})
		tr := NewStoreTracker(StoreConfig{Store: st, StoreKind: "memory", Instance: "sp-1", TTL: 10 * time.Minute,
			Tombstone: 15 * time.Minute, Timeout: time.Second, Now: time.Now, OnStoreError: func(string, error) {},
			Cookie: CookieSettings{Ring: keyringtest.Ring(b, "k1")}})
		r := httptest.NewRequest("GET", "/app", nil)
		const requestID = "id-0123456789abcdef0123456789abcdef01234567" // crewjam's form: "id-" + 40 hex
		// Warm the store's shards before measuring.
		if _, err := tr.Begin(httptest.NewRecorder(), r, requestID, "/app"); err != nil {
			b.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range n {
			// A fresh writer each time: the binding cookies it is sent
			// are garbage, not state the store holds.
			if _, err := tr.Begin(httptest.NewRecorder(), r, requestID, "/app"); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/pending")
		runtime.KeepAlive(st)
		st.Close()
	}
}
