package stickyproxy

import (
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/samlha/samlha/stickyproxy/forward"
)

// A client's share. The proxy keeps, per client, what the client holds
// now (never a history): its connections, its requests forwarded, its
// requests streaming a body, and the bytes buffered for it. The client is
// the TCP peer, or behind a trusted peer the address X-Forwarded-For names
// (forward.Trusted.ClientAddr); an IPv6 client by its /64
// (forward.ClientKey). Connections are counted by TCP peer, and not for a
// trusted peer, which carries many clients.

// Limits a client can reach; each is a value of the "limit" label of
// stickyproxy_client_limited_total.
const (
	limitInFlightPerClient  = "in-flight-per-client"
	limitStreamingPerClient = "streaming-per-client"
	limitBufferPerClient    = "buffer-per-client"
	limitBufferTotal        = "buffer-total"
)

var limitNames = []string{limitInFlightPerClient, limitStreamingPerClient, limitBufferPerClient, limitBufferTotal}

// clientUse is what one client holds now.
type clientUse struct {
	key       netip.Addr
	refs      int // under clientTable.mu
	conns     atomic.Int64
	inflight  atomic.Int64
	streaming atomic.Int64
	buffered  atomic.Int64
}

// clientTable holds an entry per client that holds anything; an entry goes
// when its last holder lets go.
type clientTable struct {
	mu   sync.Mutex
	m    map[netip.Addr]*clientUse
	free []*clientUse // entries let go of, for reuse (an entry per request otherwise)
}

func (ct *clientTable) get(key netip.Addr) *clientUse {
	ct.mu.Lock()
	cu := ct.m[key]
	if cu == nil {
		if n := len(ct.free); n > 0 {
			cu, ct.free = ct.free[n-1], ct.free[:n-1]
		} else {
			cu = new(clientUse)
		}
		cu.key = key
		ct.m[key] = cu
	}
	cu.refs++
	ct.mu.Unlock()
	return cu
}

// maxFreeClients bounds the entries kept for reuse.
const maxFreeClients = 1024

func (ct *clientTable) put(cu *clientUse) {
	ct.mu.Lock()
	if cu.refs--; cu.refs == 0 {
		delete(ct.m, cu.key)
		// Every holder has let go, so its counters are back to zero.
		if len(ct.free) < maxFreeClients {
			ct.free = append(ct.free, cu)
		}
	}
	ct.mu.Unlock()
}

func (ct *clientTable) len() int {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return len(ct.m)
}

// addCapped adds n to v unless that would take it past limit (limit <= 0:
// no limit), and says whether it did.
func addCapped(v *atomic.Int64, n, limit int64) bool {
	if limit <= 0 {
		v.Add(n)
		return true
	}
	for {
		cur := v.Load()
		if cur+n > limit {
			return false
		}
		if v.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// clientOf returns the share of r's client (referenced; release with
// clients.put) and its address.
func (p *Proxy) clientOf(r *http.Request) (*clientUse, netip.Addr) {
	a := p.fwd.Trusted.ClientAddr(r)
	return p.clients.get(forward.ClientKey(a)), a
}

// reserve takes n bytes of buffer for x's client, within its share and
// the total; it returns the limit reached, or "".
func (p *Proxy) reserve(x *exchange, n int64) string {
	if !addCapped(&x.client.buffered, n, p.cfg.MaxBufferPerClient) {
		return limitBufferPerClient
	}
	if !addCapped(&p.buffered, n, p.cfg.MaxBufferTotal) {
		x.client.buffered.Add(-n)
		return limitBufferTotal
	}
	x.reserved += n
	return ""
}

// releaseClient lets go of everything x holds for its client.
func (p *Proxy) releaseClient(x *exchange) {
	if x.client == nil {
		return
	}
	if x.reserved > 0 {
		x.client.buffered.Add(-x.reserved)
		p.buffered.Add(-x.reserved)
	}
	if x.streaming {
		x.client.streaming.Add(-1)
	}
	if x.clientSlot {
		x.client.inflight.Add(-1)
	}
	p.clients.put(x.client)
}

// limited refuses a request over a client's share (429 client-limit) or
// over the total buffer (503 proxy-busy), counts it and logs it (sampled).
func (p *Proxy) limited(w http.ResponseWriter, x *exchange, limit string) {
	status, msg := http.StatusTooManyRequests, "stickyproxy: this client holds too much at once ("+limit+"); retry shortly.\n"
	x.d = DecisionClientLimit
	if limit == limitBufferTotal {
		status, msg = http.StatusServiceUnavailable, "stickyproxy: the proxy is buffering as much as it may; retry shortly.\n"
		x.d = DecisionProxyBusy
	}
	p.m.limited.WithLabelValues(limit).Inc()
	if ok, dropped := p.sample("limit:"+limit, time.Now()); ok {
		p.log.Warn("request refused: client over its share", "limit", limit, "client", x.clientAddr.String(), "refused_since_last_line", dropped)
	}
	p.refuseStatus(w, x, status, msg)
}

// logSampler lets one log line a second through and counts the others,
// so that a flood of refusals is counted in full (the metrics) but cannot
// flood the log.
type logSampler struct {
	last    atomic.Int64 // unix second of the last line
	dropped atomic.Int64
}

// allow says whether a line may be logged at now, and how many were not
// since the last one.
func (s *logSampler) allow(now time.Time) (bool, int64) {
	sec := now.Unix()
	if s.last.Load() == sec || s.last.Swap(sec) == sec {
		s.dropped.Add(1)
		return false, 0
	}
	return true, s.dropped.Swap(0)
}

// sample is the sampler of one kind of refusal (made at start-up; an
// unknown kind is always logged).
func (p *Proxy) sample(kind string, now time.Time) (bool, int64) {
	s := p.samplers[kind]
	if s == nil {
		return true, 0
	}
	return s.allow(now)
}

func (p *Proxy) initSamplers() {
	kinds := []string{"conns-total", "conns-per-client"}
	for _, l := range limitNames {
		kinds = append(kinds, "limit:"+l)
	}
	for _, r := range adminRefusalReasons {
		kinds = append(kinds, "admin:"+r)
	}
	p.samplers = make(map[string]*logSampler, len(kinds))
	for _, k := range kinds {
		p.samplers[k] = new(logSampler)
	}
}
