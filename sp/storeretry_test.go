package sp

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/memory"
)

// waitingStore is a store that rides out failovers (store.FailoverWaiter).
type waitingStore struct {
	store.Store
	budget  time.Duration
	retries map[string]uint64
}

func (w waitingStore) FailoverBudget() time.Duration { return w.budget }
func (w waitingStore) Retries() map[string]uint64    { return w.retries }

// The calls of logins and sessions may take the store's failover budget on
// top of StoreTimeout (or the budget is never spent), and the store's
// retries are exported by operation.
func TestStoreCallTimeoutAddsTheFailoverBudget(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	mem := memory.New(memory.Options{})
	t.Cleanup(func() { mem.Close() })
	st := waitingStore{Store: mem, budget: 5 * time.Second, retries: map[string]uint64{"swap": 3, "put-if-absent": 1}}
	for _, tc := range []struct {
		name           string
		store, handoff store.Store
		want           time.Duration
	}{
		{"no budget", mem, nil, timeout},
		{"store", st, nil, timeout + 5*time.Second},
		{"handoff", nil, st, timeout + 5*time.Second},
	} {
		s := &SP{cfg: Config{StoreTimeout: timeout, Store: tc.store, Handoff: tc.handoff}}
		if got := s.storeCallTimeout(); got != tc.want {
			t.Errorf("%s: storeCallTimeout() = %v, want %v", tc.name, got, tc.want)
		}
	}

	reg := prometheus.NewRegistry()
	registerStoreRetries(reg, st, nil)
	got := gatherCounters(t, reg, "samlha_sp_store_retries_total")
	if len(got) != 2 || got["put-if-absent"] != 1 || got["swap"] != 3 {
		t.Errorf("samlha_sp_store_retries_total = %v, want put-if-absent 1, swap 3", got)
	}
	empty := prometheus.NewRegistry()
	registerStoreRetries(empty, mem, nil)
	if got := gatherCounters(t, empty, "samlha_sp_store_retries_total"); len(got) != 0 {
		t.Errorf("a store without retries exports %v, want nothing", got)
	}
}

// gatherCounters returns the counter name's values by their op label.
func gatherCounters(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
