package stickyproxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

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
//	GET  /targets                 every target's state (JSON)           token
//	POST /targets/{name}/drain    stop sending it new clients (and, with token
//	                              --drain-mode=alb, pinned ones too)
//	POST /targets/{name}/undrain  put it back                           token
//	POST /stickiness/off          stop pinning: balance every request,  token
//	                              as ALB's stickiness.enabled=false does
//	                              (the end of a move to shared state)
//	POST /stickiness/on           pin again (configured stickiness)     token
//	GET  /metrics                 Prometheus metrics                    token
//	GET  /healthz                 200 while the proxy runs
//	GET  /readyz                  200 if some target is usable, else 503
//
// "token" calls need "Authorization: Bearer <Config.AdminToken>" (compared
// in constant time); without a configured token they are refused (403)
// unless Config.AdminInsecure. Every call, /healthz included, is refused
// (403) when the request comes from another site: a Sec-Fetch-Site of
// cross-site or same-site, or an Origin whose host is not the request's.
func (p *Proxy) Admin() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /targets", p.Guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, p.Targets())
	})))
	drain := func(on bool) http.Handler {
		return p.Guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name := r.PathValue("name")
			if !p.SetDraining(name, on) {
				writeJSON(w, http.StatusNotFound, map[string]string{"error": "no target named " + name})
				return
			}
			writeJSON(w, http.StatusOK, p.status(p.byName[name], p.now().UnixNano()))
		}))
	}
	mux.Handle("POST /targets/{name}/drain", drain(true))
	mux.Handle("POST /targets/{name}/undrain", drain(false))
	stick := func(on bool) http.Handler {
		return p.Guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p.codec == nil {
				writeJSON(w, http.StatusConflict, map[string]string{"error": "stickiness is off in the configuration; there is nothing to switch"})
				return
			}
			if p.unpinned.Swap(!on) != !on {
				p.log.Info("stickiness switched at run time", "pinning", on)
			}
			writeJSON(w, http.StatusOK, map[string]bool{"pinning": on})
		}))
	}
	mux.Handle("POST /stickiness/off", stick(false))
	mux.Handle("POST /stickiness/on", stick(true))
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
	mux.Handle("GET /metrics", p.Guard(promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{Registry: p.reg})))
	return p.sameSiteOnly(mux)
}

// Guard wraps h, an admin handler, in the token check: the request must
// carry "Authorization: Bearer <Config.AdminToken>". Commands use it for
// what they add to the admin listener (pprof).
func (p *Proxy) Guard(h http.Handler) http.Handler {
	token := sha256.Sum256([]byte(p.cfg.AdminToken))
	configured := p.cfg.AdminToken != ""
	return p.sameSiteOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !configured {
			if p.cfg.AdminInsecure && loopbackHost(r.Host) {
				h.ServeHTTP(w, r)
				return
			}
			if p.cfg.AdminInsecure {
				// A page on another name that resolves to loopback (DNS
				// rebinding) is same-origin to itself: without a token, only
				// a request addressed to loopback by name or IP is served.
				p.adminRefuse(w, r, http.StatusForbidden, "insecure-non-loopback-host",
					"stickyproxy admin: --admin-insecure serves only requests whose Host is localhost or a loopback address")
				return
			}
			p.adminRefuse(w, r, http.StatusForbidden, "no-token-configured",
				"stickyproxy admin: no admin token is configured, so this call is disabled (set --admin-token-file)")
			return
		}
		got, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stickyproxy-admin"`)
			p.adminRefuse(w, r, http.StatusUnauthorized, "missing-token", "stickyproxy admin: missing Authorization: Bearer token")
			return
		}
		// Hashes, so that neither content nor length leaks through timing.
		if sum := sha256.Sum256([]byte(got)); subtle.ConstantTimeCompare(sum[:], token[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stickyproxy-admin", error="invalid_token"`)
			p.adminRefuse(w, r, http.StatusUnauthorized, "wrong-token", "stickyproxy admin: wrong token")
			return
		}
		h.ServeHTTP(w, r)
	}))
}

// sameSiteOnly refuses requests a browser sends on behalf of another site.
func (p *Proxy) sameSiteOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := r.Header.Get("Sec-Fetch-Site"); s == "cross-site" || s == "same-site" {
			p.adminRefuse(w, r, http.StatusForbidden, "cross-site", "stickyproxy admin: refused, Sec-Fetch-Site is "+s)
			return
		}
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			if o == "null" || err != nil || !strings.EqualFold(u.Host, r.Host) {
				p.adminRefuse(w, r, http.StatusForbidden, "cross-site", "stickyproxy admin: refused, Origin "+strconv.Quote(o)+" is another site")
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// adminRefusalReasons are the values of stickyproxy_admin_refused_total's
// reason label.
var adminRefusalReasons = []string{"no-token-configured", "insecure-non-loopback-host", "missing-token", "wrong-token", "cross-site"}

// adminRefuse refuses an admin call: counted always, logged at most once a
// second per reason (a flood of refusals must not flood the log).
func (p *Proxy) adminRefuse(w http.ResponseWriter, r *http.Request, status int, reason, msg string) {
	p.m.adminRefused.WithLabelValues(reason).Inc()
	if ok, dropped := p.sample("admin:"+reason, time.Now()); ok {
		p.log.Warn("admin request refused", "reason", reason, "method", r.Method, "path", r.URL.Path,
			"client", r.RemoteAddr, "origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"),
			"refused_since_last_line", dropped)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, msg, status)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// loopbackHost reports whether host (a Host header, with or without a port)
// names loopback: localhost or an address in 127.0.0.0/8 or ::1.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
