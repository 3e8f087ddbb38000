package login

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the login engine's Prometheus series.
type metrics struct {
	loginsStarted   prometheus.Counter
	loginsSucceeded prometheus.Counter
	acsDuration     *prometheus.HistogramVec
	storeErrors     *prometheus.CounterVec // op
	sessionMisses   *prometheus.CounterVec // kind
	idpMetadata     prometheus.Gauge
	idpRefreshErrs  prometheus.Counter
	logouts         *prometheus.CounterVec // outcome
}

func newMetrics(reg prometheus.Registerer) *metrics {
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
		idpMetadata: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "samlha_sp_idp_metadata_loaded",
			Help: "1 once the IdP metadata is loaded, 0 before.",
		}),
		idpRefreshErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "samlha_sp_idp_metadata_errors_total",
			Help: "Failed fetches of the IdP metadata.",
		}),
	}
	m.logouts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "samlha_sp_logouts_total",
		Help: "Logouts by outcome: local (the IdP offers no single logout), sent-to-idp (the session ended here, the browser went to the IdP), idp-confirmed (its LogoutResponse verified), idp-unconfirmed (it did not; the reason is in samlha_sp_failures_total), idp-initiated (a LogoutRequest from the IdP).",
	}, []string{"outcome"})
	reg.MustRegister(m.loginsStarted, m.loginsSucceeded, m.acsDuration, m.storeErrors,
		m.sessionMisses, m.idpMetadata, m.idpRefreshErrs, m.logouts)
	return m
}

// cacheTrusted registers the session cache's state: 1 while it serves
// from memory, 0 while its invalidation channel is unproven.
func (m *metrics) cacheTrusted(reg prometheus.Registerer, trusted func() bool) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "samlha_sp_session_cache_trusted",
		Help: "1 while the session cache serves from memory (its invalidation channel is proven live), 0 while every session is read from the store.",
	}, func() float64 {
		if trusted() {
			return 1
		}
		return 0
	}))
}
