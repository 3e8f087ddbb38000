package sp

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the SP's Prometheus series, on a registry of its own.
type metrics struct {
	loginsStarted   prometheus.Counter
	loginsSucceeded prometheus.Counter
	acsDuration     *prometheus.HistogramVec
	storeErrors     *prometheus.CounterVec // op
	sessionMisses   *prometheus.CounterVec // kind
	requests        *prometheus.CounterVec // route, code
	idpMetadata     prometheus.Gauge
	idpRefreshErrs  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, instance, storeKind string) *metrics {
	m := &metrics{
		loginsStarted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "samlha_sp_logins_started_total",
			Help: "Logins this replica began (AuthnRequests sent to the IdP).",
		}),
		loginsSucceeded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "samlha_sp_logins_succeeded_total",
			Help: "Logins this replica finished at its ACS with a new session.",
		}),
		acsDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "samlha_sp_acs_duration_seconds",
			Help:    "Time to handle a POST to the ACS, by result (success or the failure cause).",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1},
		}, []string{"result"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samlha_sp_store_errors_total",
			Help: "Store operations that failed for a reason other than not-found or exists, by operation.",
		}, []string{"op"}),
		sessionMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samlha_sp_session_misses_total",
			Help: "Requests with a session cookie whose session this replica could not use, by kind (cross-instance, not-found, invalid, revoked, expired).",
		}, []string{"kind"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samlha_sp_http_requests_total",
			Help: "HTTP requests served, by route pattern and status code.",
		}, []string{"route", "code"}),
		idpMetadata: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "samlha_sp_idp_metadata_loaded",
			Help: "1 once the IdP metadata is loaded, 0 before.",
		}),
		idpRefreshErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "samlha_sp_idp_metadata_errors_total",
			Help: "Failed fetches of the IdP metadata.",
		}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "samlha_sp_info",
		Help:        "Constant 1, labelled with this replica's instance ID and store kind.",
		ConstLabels: prometheus.Labels{"instance_id": instance, "store": storeKind},
	})
	info.Set(1)
	reg.MustRegister(m.loginsStarted, m.loginsSucceeded, m.acsDuration, m.storeErrors,
		m.sessionMisses, m.requests, m.idpMetadata, m.idpRefreshErrs, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
