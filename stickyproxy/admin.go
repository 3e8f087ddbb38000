package stickyproxy

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TargetStatus is one target as the admin API lists it.
type TargetStatus struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	Weight   int    `json:"weight"`
	Healthy  bool   `json:"healthy"`
	Draining bool   `json:"draining"`
	InFlight int64  `json:"in_flight"`
	// Requests is every request the target was chosen for.
	Requests uint64 `json:"requests"`
	// PinnedRequests is requests routed to it by a valid affinity cookie.
	PinnedRequests uint64 `json:"pinned_requests"`
	// PinsIssued is responses that pinned a client to it anew (new,
	// re-pinned, relaystate, retried...). The proxy keeps no per-client
	// state, so the number of clients pinned now is not known; these two
	// counters are what it can tell.
	PinsIssued      uint64 `json:"pins_issued"`
	PassiveFailures int32  `json:"passive_failures"`
}

// Targets reports every target's state.
func (p *Proxy) Targets() []TargetStatus {
	now := p.now().UnixNano()
	out := make([]TargetStatus, 0, len(p.targets))
	for _, t := range p.targets {
		out = append(out, p.status(t, now))
	}
	return out
}

func (p *Proxy) status(t *target, now int64) TargetStatus {
	return TargetStatus{
		Name: t.name, URL: t.url.String(), Weight: t.weight,
		Healthy: t.up(now), Draining: t.draining.Load(), InFlight: t.inflight.Load(),
		Requests: t.requests.Load(), PinnedRequests: t.pinnedRequests.Load(),
		PinsIssued: t.pinsIssued.Load(), PassiveFailures: t.passiveFails.Load(),
	}
}

// SetDraining drains (true) or undrains (false) the named target; it
// reports whether the target exists.
func (p *Proxy) SetDraining(name string, draining bool) bool {
	t := p.byName[name]
	if t == nil {
		return false
	}
	if t.draining.Swap(draining) != draining {
		p.log.Info("target drain state changed", "target", name, "draining", draining, "drain_mode", string(p.cfg.DrainMode))
	}
	return true
}

// Admin is the admin API, meant for a private listener:
//
//	GET  /targets                 every target's state (JSON)
//	POST /targets/{name}/drain    stop sending it new clients (and, with
//	                              --drain-mode=alb, pinned ones too)
//	POST /targets/{name}/undrain  put it back
//	GET  /healthz                 200 while the proxy runs
//	GET  /readyz                  200 if some target is usable, else 503
//	GET  /metrics                 Prometheus metrics
func (p *Proxy) Admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /targets", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, p.Targets())
	})
	drain := func(on bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			name := r.PathValue("name")
			if !p.SetDraining(name, on) {
				writeJSON(w, http.StatusNotFound, map[string]string{"error": "no target named " + name})
				return
			}
			writeJSON(w, http.StatusOK, p.status(p.byName[name], p.now().UnixNano()))
		}
	}
	mux.HandleFunc("POST /targets/{name}/drain", drain(true))
	mux.HandleFunc("POST /targets/{name}/undrain", drain(false))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		f := filter{now: p.now().UnixNano()}
		usable := false
		for _, t := range p.targets {
			usable = usable || p.ok(t, &f)
		}
		if !usable {
			http.Error(w, "no target is usable", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{Registry: p.reg}))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
