package gateway

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The fast hop is taken exactly where it does what the reverse proxy
// would: a plain http upstream without path, query or credentials, no
// Transport of the caller's, and a flush policy it has.
func TestFastHopOnlyWhereItAgrees(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		upstream string
		tr       http.RoundTripper
		flush    time.Duration
		want     bool
	}{
		{"http://127.0.0.1:8080", nil, -1, true},
		{"http://app.internal/", nil, 0, true},
		{"https://app.internal", nil, -1, false},
		{"http://app.internal/base", nil, -1, false},
		{"http://app.internal/?x=1", nil, -1, false},
		{"http://u:p@app.internal", nil, -1, false},
		{"http://app.internal", &http.Transport{}, -1, false},
		{"http://app.internal", nil, 100 * time.Millisecond, false},
	} {
		u, err := url.Parse(tc.upstream)
		if err != nil {
			t.Fatal(err)
		}
		g := New(Options{Upstream: u, RootURL: u, Transport: tc.tr, FlushInterval: tc.flush, Registry: prometheus.NewRegistry()})
		if got := g.engine != nil; got != tc.want {
			t.Errorf("%s, transport %v, flush %v: fast hop %v, want %v", tc.upstream, tc.tr != nil, tc.flush, got, tc.want)
		}
		if g.engine != nil && (g.pool.Host != u.Host || g.engine.FlushWrites != (tc.flush < 0)) {
			t.Errorf("%s: Host %q, FlushWrites %v", tc.upstream, g.pool.Host, g.engine.FlushWrites)
		}
	}
}
