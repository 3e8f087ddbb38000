package sp_test

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/crewjam/saml/samlsp"

	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/store"
)

// acsCase is one SAML response ready to post to the ACS: the form, the
// browser's cookies, and the AuthnRequest ID it answers.
type acsCase struct {
	form      url.Values
	cookies   []*http.Cookie
	requestID string
}

var inResponseTo = regexp.MustCompile(`InResponseTo="([^"]+)"`)

// prepareACS runs n logins through a one-replica topology up to the ACS and
// returns them, unposted.
func prepareACS(b *testing.B, top *topology, n int) []acsCase {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, _ := url.Parse(top.ProxyURL)
	cases := make([]acsCase, n)
	for i := range cases {
		br := sptest.NewBrowser(sptest.Options{})
		pf, res, err := br.LoginUntilACS(ctx, top.ProxyURL+"/app", "alice", "alice-password")
		if err != nil {
			b.Fatalf("login %d: %v\n%s", i, err, describe(res))
		}
		xml, err := base64.StdEncoding.DecodeString(pf.Fields.Get("SAMLResponse"))
		if err != nil {
			b.Fatal(err)
		}
		m := inResponseTo.FindSubmatch(xml)
		if m == nil {
			b.Fatal("response has no InResponseTo")
		}
		cases[i] = acsCase{form: pf.Fields, cookies: br.Cookies(root), requestID: string(m[1])}
		br.CloseIdleConnections()
	}
	return cases
}

func (c acsCase) request() *http.Request {
	req := httptest.NewRequest("POST", "/saml/acs", strings.NewReader(c.form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, ck := range c.cookies {
		req.AddCookie(ck)
	}
	return req
}

// bareParser is crewjam's ServiceProvider configured as the SP's, without
// any state: what ParseResponse costs on its own.
func bareParser(b *testing.B, top *topology) func(acsCase) error {
	root, _ := url.Parse(top.ProxyURL)
	key, cert := spKeyPair(b)
	mw, err := samlsp.New(samlsp.Options{URL: *root, Key: key, Certificate: cert, IDPMetadata: top.IdP.Metadata()})
	if err != nil {
		b.Fatal(err)
	}
	return func(c acsCase) error {
		req := c.request()
		if err := req.ParseForm(); err != nil {
			return err
		}
		if _, err := mw.ServiceProvider.ParseResponse(req, []string{c.requestID}); err != nil {
			return fmt.Errorf("bare ParseResponse: %v", err)
		}
		return nil
	}
}

func postACS(top *topology) func(acsCase) error {
	h := top.Replicas[0].SP
	return func(c acsCase) error {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, c.request())
		if rec.Code != http.StatusFound {
			return fmt.Errorf("ACS answered %d (%s): %s", rec.Code, rec.Header().Get("X-Samlha-Cause"), rec.Body.String())
		}
		return nil
	}
}

// must runs f, failing the benchmark on its error; only from the
// benchmark's own goroutine.
func must(b *testing.B, f func(acsCase) error) func(acsCase) {
	return func(c acsCase) {
		if err := f(c); err != nil {
			b.Fatal(err)
		}
	}
}

// benchStore is what an ACS benchmark runs on: the replica's stores, and,
// for a store in another process, how much CPU that process has used so far
// (nil for an in-process store, whose CPU is the benchmark's own).
type benchStore struct {
	open      func(testing.TB, int) store.Store
	serverCPU func(testing.TB) time.Duration
}

var memoryBench = benchStore{open: memoryStores}

// floorKey is a key no benchmark writes: reading it is one round trip to
// the store and nothing else.
const floorKey = "bench-floor-absent"

// acsArms starts a one-replica topology on bs and returns its three arms,
// each of which handles one prepared response: bare is crewjam's
// ParseResponse alone; floor is the same parse followed by one plain read
// of the replica's own store (one round trip to Redis, on its client and
// connection pool): the least that any ACS keeping its state in that store
// must cost, since the state can only be written once the assertion is
// known; acs is the replica's whole ACS. acs/floor is then what samlha's
// state handling costs beyond that round trip.
func acsArms(b *testing.B, bs benchStore) (top *topology, bare, floor, acs func(acsCase) error) {
	var st store.Store
	top = startTopology(b, topologyConfig{Replicas: 1, Quiet: true, Store: func(t testing.TB, i int) store.Store {
		st = bs.open(t, i)
		return st
	}})
	bare, acs = bareParser(b, top), postACS(top)
	floor = func(c acsCase) error {
		if err := bare(c); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := st.Get(ctx, floorKey); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("floor read: %v, want not found", err)
		}
		return nil
	}
	return top, bare, floor, acs
}

// benchACS measures one whole ACS (state take, parse, replay record, session
// create) on a replica with the given store, next to crewjam's bare
// ParseResponse of the same responses and to the floor (the parse and one
// round trip to the store, see acsArms), and reports the ratios.
//
//	go test -run '^$' -bench ACS -benchtime 300x ./sp
func benchACS(b *testing.B, bs benchStore) {
	top, bareF, floorF, acsF := acsArms(b, bs)
	arms := [3]func(acsCase){must(b, bareF), must(b, floorF), must(b, acsF)}
	cases := prepareACS(b, top, b.N)
	// Warm every path (first-use allocations, connection set-up).
	for i, c := range prepareACS(b, top, len(arms)) {
		arms[i](c)
	}

	var took [3]time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// Interleaved, so all three see the same machine at the same
		// moment, each first, second and third as often: a parse warms
		// the caches for the next one of the same response.
		for k := range arms {
			arm := (i + k) % len(arms)
			t0 := time.Now()
			arms[arm](cases[i])
			took[arm] += time.Since(t0)
		}
	}
	b.StopTimer()
	bare, floor, acs := took[0], took[1], took[2]
	b.ReportMetric(float64(bare.Microseconds())/float64(b.N), "bare-µs/op")
	b.ReportMetric(float64(floor.Microseconds())/float64(b.N), "floor-µs/op")
	b.ReportMetric(float64(acs.Microseconds())/float64(b.N), "acs-µs/op")
	b.ReportMetric(float64(acs)/float64(bare), "acs/bare")
	b.ReportMetric(float64(floor)/float64(bare), "floor/bare")
	b.ReportMetric(float64(acs)/float64(floor), "acs/floor")
}

func BenchmarkACSMemory(b *testing.B) { benchACS(b, memoryBench) }

// benchACSCapacity is benchACS's throughput twin: how many ACS a replica
// finishes per second against how many bare parses (and floors), each run
// by two goroutines per CPU over the same responses (so one's wait for the
// store is filled by another's parse, as a replica under load does), in
// rotating chunks so that all see the same machine. benchACS's ratio is
// one login's latency; this one is the replica's cost per login, what
// sizes a deployment. It also reports the CPU each arm used per login, the
// benchmark process's own and the store server's (a Redis server shares
// these cores): cpu-acs/bare is the whole cost of a login in CPU.
//
//	go test -run '^$' -bench ACSCapacity -benchtime 300x ./sp
func benchACSCapacity(b *testing.B, bs benchStore) {
	top, bareF, floorF, acsF := acsArms(b, bs)
	arms := [3]func(acsCase) error{bareF, floorF, acsF}
	cases := prepareACS(b, top, b.N)
	for i, c := range prepareACS(b, top, len(arms)) {
		must(b, arms[i])(c)
	}
	serverCPU := func() time.Duration {
		if bs.serverCPU == nil {
			return 0
		}
		return bs.serverCPU(b)
	}

	workers := 2 * runtime.GOMAXPROCS(0)
	run := func(f func(acsCase) error, cs []acsCase) {
		var (
			next     atomic.Int64
			wg       sync.WaitGroup
			mu       sync.Mutex
			firstErr error
		)
		for range workers {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < int64(len(cs)); i = next.Add(1) - 1 {
					if err := f(cs[i]); err != nil {
						mu.Lock()
						firstErr = cmp.Or(firstErr, err)
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
		if firstErr != nil {
			b.Fatal(firstErr)
		}
	}
	chunk := 8 * workers
	var wall, cpu, srv [3]time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for n, lo := 0, 0; lo < b.N; n, lo = n+1, lo+chunk {
		cs := cases[lo:min(lo+chunk, b.N)]
		for k := range arms {
			arm := (n + k) % len(arms)
			t0, p0, s0 := time.Now(), processCPU(b), serverCPU()
			run(arms[arm], cs)
			wall[arm] += time.Since(t0)
			s1 := serverCPU()
			cpu[arm] += processCPU(b) - p0 + s1 - s0
			srv[arm] += s1 - s0
		}
	}
	b.StopTimer()
	perLogin := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
	b.ReportMetric(float64(b.N)/wall[0].Seconds(), "bare/s")
	b.ReportMetric(float64(b.N)/wall[2].Seconds(), "acs/s")
	b.ReportMetric(float64(wall[2])/float64(wall[0]), "acs/bare")
	b.ReportMetric(float64(wall[2])/float64(wall[1]), "acs/floor")
	b.ReportMetric(perLogin(cpu[0]), "cpu-bare-µs/op")
	b.ReportMetric(perLogin(cpu[1]), "cpu-floor-µs/op")
	b.ReportMetric(perLogin(cpu[2]), "cpu-acs-µs/op")
	b.ReportMetric(float64(cpu[1])/float64(cpu[0]), "cpu-floor/bare")
	b.ReportMetric(float64(cpu[2])/float64(cpu[0]), "cpu-acs/bare")
	b.ReportMetric(float64(cpu[2])/float64(cpu[1]), "cpu-acs/floor")
	if bs.serverCPU != nil {
		// The store server's share of each arm's CPU. Its background
		// work and the two INFO calls per chunk that read it (about 2 µs
		// per login) are in every arm: the bare arm shows them alone.
		b.ReportMetric(perLogin(srv[0]), "srv-bare-µs/op")
		b.ReportMetric(perLogin(srv[1]), "srv-floor-µs/op")
		b.ReportMetric(perLogin(srv[2]), "srv-acs-µs/op")
	}
}

// processCPU is the CPU time this process has used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkACSCapacityMemory(b *testing.B) { benchACSCapacity(b, memoryBench) }
