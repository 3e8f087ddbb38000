package sp_test

import (
	"net/http"
	"testing"
)

// counterValue sums the samples of a counter family on r's registry whose
// labels include want.
func counterValue(t *testing.T, r *replica, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := r.Reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// TestRequestsCountedByRouteAndStatus checks samlha_sp_http_requests_total:
// the status a handler wrote (or 200 when it wrote only a body), by route
// pattern.
func TestRequestsCountedByRouteAndStatus(t *testing.T) {
	t.Parallel()
	top := startTopology(t, topologyConfig{Replicas: 1, Store: memoryStores})
	r := top.Replicas[0]
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/healthz", 200},
		{"GET", "/healthz", 200},
		{"GET", "/no-such-page", 404},
		{"POST", "/saml/acs", 400},
	} {
		req, _ := http.NewRequest(c.method, r.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Fatalf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
	}
	for _, c := range []struct {
		route, code string
		want        float64
	}{{"/healthz", "200", 2}, {"other", "404", 1}, {"/saml/acs", "400", 1}} {
		got := counterValue(t, r, "samlha_sp_http_requests_total", map[string]string{"route": c.route, "code": c.code})
		if got != c.want {
			t.Errorf("samlha_sp_http_requests_total{route=%q,code=%q} = %v, want %v", c.route, c.code, got, c.want)
		}
	}
}
