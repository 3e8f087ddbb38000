package loginstate

import (
	"net/http/httptest"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/samlha/samlha/sp/keyring/keyringtest"
	"github.com/samlha/samlha/sp/limits"
	"github.com/samlha/samlha/store/memory"
)

// BenchmarkPendingLoginMemory measures the heap a memory store holds per
// login in progress: the tracked request exactly as begin stores it (key
// "req:" + RelayState, compact value), in a store holding 100k of them.
// Goal: at most 512 bytes per pending login.
//
//	go test -run '^$' -bench PendingLoginMemory ./sp/loginstate
func BenchmarkPendingLoginMemory(b *testing.B) {
	for range b.N {
		b.ReportMetric(pendingHeap(b, nil), "B/pending")
	}
}

// BenchmarkPendingLoginWithLimits is BenchmarkPendingLoginMemory with the
// login limits each start passes first, their per-client state included:
// 100,000 pending logins from 100,000 addresses, the default limits but
// for a ceiling raised to hold them and the replica rate off (one token
// bucket, whose memory does not grow). Goal: at most 256 bytes per
// pending login.
//
//	go test -run '^$' -bench PendingLoginWithLimits ./sp/loginstate
func BenchmarkPendingLoginWithLimits(b *testing.B) {
	for range b.N {
		l := limits.LoginLimits{MaxPending: 200_000, TotalRate: -1}
		l.SetDefaults()
		g := limits.NewGate(l, 25*time.Minute, false)
		t0 := time.Unix(1764000000, 0)
		i := 0
		b.ReportMetric(pendingHeap(b, func() {
			i++
			if f, _ := g.Admit(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), t0.Add(time.Duration(i)*time.Millisecond)); f != nil {
				b.Fatal(f)
			}
		}), "B/login")
		runtime.KeepAlive(g)
	}
}

// pendingHeap is the heap a memory store holds per login in progress
// (plus what admit keeps, if not nil): the tracked request exactly as
// begin stores it (key "req:" + RelayState, compact value), in a store
// holding 100k of them.
func pendingHeap(b *testing.B, admit func()) float64 {
	const n = 100_000
	st := memory.New(memory.Options{JanitorInterval: -1})
	defer st.Close()
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
		if admit != nil {
			admit()
		}
		// A fresh writer each time: the binding cookies it is sent are
		// garbage, not state the store holds.
		if _, err := tr.Begin(httptest.NewRecorder(), r, requestID, "/app"); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(st)
	return float64(after.HeapAlloc-before.HeapAlloc) / n
}
