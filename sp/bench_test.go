package sp_test

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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

// benchACS measures one whole ACS (state take, parse, replay record, session
// create) on a replica with the given store, next to crewjam's bare
// ParseResponse of the same responses, and reports the ratio.
//
//	go test -run '^$' -bench ACS -benchtime 300x ./sp
func benchACS(b *testing.B, stores func(testing.TB, int) store.Store) {
	top := startTopology(b, topologyConfig{Replicas: 1, Store: stores, Quiet: true})
	bare, acs := must(b, bareParser(b, top)), must(b, postACS(top))
	cases := prepareACS(b, top, b.N)
	// Warm both paths (first-use allocations, connection set-up).
	warm := prepareACS(b, top, 2)
	bare(warm[0])
	acs(warm[1])

	var tBare, tACS time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// Interleaved, so both see the same machine at the same moment.
		t0 := time.Now()
		bare(cases[i])
		t1 := time.Now()
		acs(cases[i])
		t2 := time.Now()
		tBare += t1.Sub(t0)
		tACS += t2.Sub(t1)
	}
	b.StopTimer()
	b.ReportMetric(float64(tBare.Microseconds())/float64(b.N), "bare-µs/op")
	b.ReportMetric(float64(tACS.Microseconds())/float64(b.N), "acs-µs/op")
	b.ReportMetric(float64(tACS)/float64(tBare), "acs/bare")
}

func BenchmarkACSMemory(b *testing.B) { benchACS(b, memoryStores) }

// benchACSCapacity is benchACS's throughput twin: how many ACS a replica
// finishes per second against how many bare parses, both run by two
// goroutines per CPU over the same responses (so one's wait for the store
// is filled by another's parse, as a replica under load does), in
// alternating chunks so that both see the same machine. benchACS's ratio
// is one login's latency; this one is the replica's cost per login, what
// sizes a deployment.
//
//	go test -run '^$' -bench ACSCapacity -benchtime 300x ./sp
func benchACSCapacity(b *testing.B, stores func(testing.TB, int) store.Store) {
	top := startTopology(b, topologyConfig{Replicas: 1, Store: stores, Quiet: true})
	bare, acs := bareParser(b, top), postACS(top)
	cases := prepareACS(b, top, b.N)
	warm := prepareACS(b, top, 2)
	must(b, bare)(warm[0])
	must(b, acs)(warm[1])

	workers := 2 * runtime.GOMAXPROCS(0)
	run := func(f func(acsCase) error, cs []acsCase) time.Duration {
		var (
			next     atomic.Int64
			wg       sync.WaitGroup
			mu       sync.Mutex
			firstErr error
		)
		t0 := time.Now()
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
		return time.Since(t0)
	}
	chunk := 8 * workers
	var tBare, tACS time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for lo := 0; lo < b.N; lo += chunk {
		cs := cases[lo:min(lo+chunk, b.N)]
		tBare += run(bare, cs)
		tACS += run(acs, cs)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/tBare.Seconds(), "bare/s")
	b.ReportMetric(float64(b.N)/tACS.Seconds(), "acs/s")
	b.ReportMetric(float64(tACS)/float64(tBare), "acs/bare")
}

func BenchmarkACSCapacityMemory(b *testing.B) { benchACSCapacity(b, memoryStores) }
