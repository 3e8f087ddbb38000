package stickyproxy_test

import (
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/samlha/samlha/stickyproxy"
)

// metricValue returns the value of the counter or gauge name whose labels
// include the given name/value pairs, or 0 if there is none.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func gaugeValue(t *testing.T, p *stickyproxy.Proxy, name string) float64 {
	t.Helper()
	return metricValue(t, p.Registry(), name)
}

// publicServer serves p as the command does (PublicServer, Listener: the
// fast serve loop unless the configuration says otherwise) on a loopback
// port, as an httptest.Server.
func publicServer(t testing.TB, p *stickyproxy.Proxy) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(p)
	srv.Config = p.PublicServer()
	srv.Listener = p.Listener(srv.Listener)
	srv.Start()
	return srv
}
