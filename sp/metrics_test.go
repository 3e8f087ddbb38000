package sp_test

import (
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
