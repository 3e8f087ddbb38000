package sp_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
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
func bareParser(b *testing.B, top *topology) func(acsCase) {
	root, _ := url.Parse(top.ProxyURL)
	key, cert := spKeyPair(b)
	mw, err := samlsp.New(samlsp.Options{URL: *root, Key: key, Certificate: cert, IDPMetadata: top.IdP.Metadata()})
	if err != nil {
		b.Fatal(err)
	}
	return func(c acsCase) {
		req := c.request()
		if err := req.ParseForm(); err != nil {
			b.Fatal(err)
		}
		if _, err := mw.ServiceProvider.ParseResponse(req, []string{c.requestID}); err != nil {
			b.Fatalf("bare ParseResponse: %v", err)
		}
	}
}

func postACS(b *testing.B, top *topology) func(acsCase) {
	h := top.Replicas[0].SP
	return func(c acsCase) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, c.request())
		if rec.Code != http.StatusFound {
			b.Fatalf("ACS answered %d (%s): %s", rec.Code, rec.Header().Get("X-Samlha-Cause"), rec.Body.String())
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
	bare, acs := bareParser(b, top), postACS(b, top)
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
