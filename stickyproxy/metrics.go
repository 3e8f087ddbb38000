package stickyproxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Decision is why a request went where it went. Its string is the value of
// the X-Stickyproxy-Decision header, the access log's "decision" field and
// the "decision" label of stickyproxy_requests_total.
type Decision uint8

const (
	// DecisionBalanced: stickiness is off; the balancer chose.
	DecisionBalanced Decision = iota
	// DecisionNew: no affinity cookie; the balancer chose and the client is
	// pinned there.
	DecisionNew
	// DecisionPinned: a valid cookie named a usable target.
	DecisionPinned
	// DecisionRepinnedUnhealthy: the pinned target is down; re-pinned.
	DecisionRepinnedUnhealthy
	// DecisionRepinnedDraining: the pinned target is draining with ALB
	// semantics; re-pinned.
	DecisionRepinnedDraining
	// DecisionInvalidCookie: the cookie was malformed, forged, sealed under
	// a key no longer in the ring, or named an unknown target; re-pinned.
	DecisionInvalidCookie
	// DecisionExpired: the cookie was authentic but expired; re-pinned.
	DecisionExpired
	// DecisionRelayState: a POST to the ACS without a valid cookie went to
	// the instance named in its RelayState.
	DecisionRelayState
	// DecisionStrictRefused: the pinned target is down and
	// --on-pinned-down=strict: 503.
	DecisionStrictRefused
	// DecisionNoTarget: no target is usable and --all-down=503: 503.
	DecisionNoTarget
	// DecisionFailOpen: no target is healthy and --all-down=fail-open: the
	// balancer chose among all targets regardless of health.
	DecisionFailOpen
	// DecisionRetried: the connection to the chosen target could not be
	// established; the request went to another target (and the client is
	// pinned there).
	DecisionRetried
	// DecisionUpstreamError: the target failed after the connection was
	// made (reset, timeout, malformed reply): 502, not retried.
	DecisionUpstreamError
	// DecisionTargetBusy: the target already has MaxInFlightPerTarget
	// requests in flight: 503, the target is not blamed.
	DecisionTargetBusy
	// DecisionClientError: reading the client's request body failed (the
	// client aborted or was slower than ClientBodyTimeout): 400 or 408 if
	// nothing was sent yet; the target is not blamed.
	DecisionClientError
	// DecisionClientLimit: the client holds its whole share already (in
	// flight, streamed bodies, buffer; see Config): 429.
	DecisionClientLimit
	// DecisionProxyBusy: the proxy buffers MaxBufferTotal bytes already:
	// 503.
	DecisionProxyBusy

	numDecisions
)

var decisionNames = [numDecisions]string{
	"balanced", "new", "pinned", "repinned-unhealthy", "repinned-draining",
	"invalid-cookie", "expired", "relaystate", "strict-refused", "no-target",
	"fail-open", "retried", "upstream-error", "target-busy", "client-error", "client-limit", "proxy-busy",
}

// decisionHeader holds the header values, precomputed so that a response
// does not allocate them.
var decisionHeader = func() (h [numDecisions][]string) {
	for i, n := range decisionNames {
		h[i] = []string{n}
	}
	return h
}()

func (d Decision) String() string { return decisionNames[d] }

// pinsClient says whether the decision (re)pins the client to the target.
func (d Decision) pinsClient() bool {
	switch d {
	case DecisionBalanced, DecisionPinned, DecisionStrictRefused, DecisionNoTarget, DecisionUpstreamError,
		DecisionTargetBusy, DecisionClientError, DecisionClientLimit, DecisionProxyBusy:
		return false
	}
	return true
}

// balanced says whether the balancer chose the target, so that another
// may do when it is full; a pinned or RelayState-routed client is not
// moved.
func (d Decision) balanced() bool {
	switch d {
	case DecisionPinned, DecisionRelayState, DecisionStrictRefused:
		return false
	}
	return true
}

// anomaly says whether the access log's "anomalies" mode records it.
func (d Decision) anomaly() bool {
	return d != DecisionNew && d != DecisionPinned && d != DecisionBalanced
}

type metrics struct {
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	invalidCookies *prometheus.CounterVec
	crossSitePOST  *prometheus.CounterVec
	upstreamErrors *prometheus.CounterVec
	healthChecks   *prometheus.CounterVec
	transitions    *prometheus.CounterVec
	connsRefused   *prometheus.CounterVec
	limited        *prometheus.CounterVec
	adminRefused   *prometheus.CounterVec
	stripped       prometheus.Counter
}

func newMetrics(p *Proxy, reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stickyproxy_requests_total",
			Help: "Requests by target and routing decision (target is \"none\" when no target was chosen).",
		}, []string{"target", "decision"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stickyproxy_upstream_latency_seconds",
			Help:    "Time from sending a request to a target to receiving its response headers.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"target"}),
		invalidCookies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stickyproxy_invalid_cookies_total",
			Help: "Affinity cookies treated as absent, by reason: malformed, forged (not authentic under any key), expired, unknown-target.",
		}, []string{"reason"}),
		crossSitePOST: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stickyproxy_cross_site_post_without_cookie_total",
			Help: "Cross-site POSTs (Sec-Fetch-Site or Origin) that arrived without a valid affinity cookie: the SameSite trap. acs is \"true\" for the ACS path.",
		}, []string{"acs"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stickyproxy_upstream_errors_total",
			Help: "Failed forwards by target and kind: dial (never connected; retried elsewhere), transport (failed after connecting; 502), refused-body (the target closed before taking the whole request body: not its failure), after-head (failed once the reply was under way).",
		}, []string{"target", "kind"}),
		healthChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stickyproxy_health_checks_total",
			Help: "Active health checks by target and result (ok, fail).",
		}, []string{"target", "result"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stickyproxy_target_transitions_total",
			Help: "Health state changes by target, new state (up, down) and cause (active, passive).",
		}, []string{"target", "to", "cause"}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stickyproxy_client_conns_refused_total",
			Help: "Client connections refused and closed, by reason: total (MaxClientConns open, 503), per-client (the peer holds MaxConnsPerClient, 429).",
		}, []string{"reason"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stickyproxy_client_limited_total",
			Help: "Requests refused because their client holds its share, by limit: in-flight-per-client, streaming-per-client, buffer-per-client (429 client-limit), buffer-total (503 proxy-busy).",
		}, []string{"limit"}),
		adminRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stickyproxy_admin_refused_total",
			Help: "Admin API requests refused, by reason: no-token-configured, missing-token, wrong-token, cross-site.",
		}, []string{"reason"}),
		stripped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stickyproxy_request_headers_stripped_total",
			Help: "Client request headers removed because Config.StripRequestHeaders or StripRequestHeaderPrefixes name them (any case, '_' as '-').",
		}),
	}
	reg.MustRegister(m.stripped, m.requests, m.latency, m.invalidCookies, m.crossSitePOST, m.upstreamErrors, m.healthChecks, m.transitions,
		m.connsRefused, m.limited, m.adminRefused)
	for _, r := range []string{"total", "per-client"} {
		m.connsRefused.WithLabelValues(r)
	}
	for _, l := range limitNames {
		m.limited.WithLabelValues(l)
	}
	gauge := func(name, help string, f func(*target) float64) {
		for _, t := range p.targets {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: name, Help: help, ConstLabels: prometheus.Labels{"target": t.name},
			}, func() float64 { return f(t) }))
		}
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge("stickyproxy_target_healthy", "1 if the target is considered healthy, else 0.",
		func(t *target) float64 { return b2f(t.up(p.now().UnixNano())) })
	gauge("stickyproxy_target_draining", "1 if the target is draining, else 0.",
		func(t *target) float64 { return b2f(t.draining.Load()) })
	gauge("stickyproxy_target_in_flight_requests", "Requests being forwarded to the target now.",
		func(t *target) float64 { return float64(t.inflight.Load()) })
	for _, g := range []struct {
		name, help string
		f          func() float64
	}{
		{"stickyproxy_in_flight_requests", "Requests being served by the proxy now.",
			func() float64 { return float64(p.inflight.Load()) }},
		{"stickyproxy_buffered_bytes", "Bytes of buffer reserved for request bodies being read whole and RelayState peeks, all clients (at most MaxBufferTotal).",
			func() float64 { return float64(p.buffered.Load()) }},
		{"stickyproxy_clients", "Clients holding a connection, a request or buffer now.",
			func() float64 { return float64(p.clients.len()) }},
		{"stickyproxy_client_conns", "Open client connections (through Listener).",
			func() float64 { return float64(p.conns.Load()) }},
		{"stickyproxy_load_imbalance_ratio", "Requests to the busiest target over the mean per target, across the sliding window (--imbalance-window): 1 is even, the number of targets is everything on one; 0 without traffic.",
			func() float64 { return p.imb.ratio(p.now().UnixNano()) }},
	} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.name, Help: g.help}, g.f))
	}

	for _, t := range p.targets {
		for d := range numDecisions {
			t.mRequests[d] = m.requests.WithLabelValues(t.name, Decision(d).String())
		}
		t.mLatency = m.latency.WithLabelValues(t.name)
	}
	return m
}
