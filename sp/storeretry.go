package sp

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/samlha/samlha/store"
)

// storeCallTimeout is the deadline of each store call a login or a session
// makes: StoreTimeout, plus the failover budget of a store that rides out
// failovers (store.FailoverWaiter: redis-sentinel://, failover_budget).
// Without it the budget would never be spent: a login caught in the
// failover window would fail at StoreTimeout whatever the store was
// willing to wait. Readiness (/readyz) keeps StoreTimeout, so that a
// balancer hears at once that the store is failing over.
func (s *SP) storeCallTimeout() time.Duration {
	return s.cfg.StoreTimeout + max(store.FailoverBudget(s.cfg.Store), store.FailoverBudget(s.cfg.Handoff))
}

// registerStoreRetries exports the retries of the stores that count them
// (store.FailoverWaiter) as samlha_sp_store_retries_total{op}: how often
// an operation was sent again because the store's server was failing over
// (the master gone, or a reply lost with its connection).
func registerStoreRetries(reg prometheus.Registerer, stores ...store.Store) {
	var waiters []store.FailoverWaiter
	for _, st := range stores {
		if w, ok := st.(store.FailoverWaiter); ok {
			waiters = append(waiters, w)
		}
	}
	if len(waiters) == 0 {
		return
	}
	reg.MustRegister(storeRetries{waiters: waiters, desc: prometheus.NewDesc("samlha_sp_store_retries_total",
		"Store operations sent again while the store failed over (its master gone or a reply lost with its connection), by operation.",
		[]string{"op"}, nil)})
}

type storeRetries struct {
	waiters []store.FailoverWaiter
	desc    *prometheus.Desc
}

func (c storeRetries) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c storeRetries) Collect(ch chan<- prometheus.Metric) {
	total := map[string]uint64{}
	for _, w := range c.waiters {
		for op, n := range w.Retries() {
			total[op] += n
		}
	}
	for op, n := range total {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), op)
	}
}
