// Package limits bounds what an anonymous client can make a replica read or
// keep: request bodies (body.go), and login starts per client, per replica
// and in pending state (this file), with the client address they are
// counted by.
package limits

import (
	"container/list"
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/stickyproxy/forward"
)

// LoginLimits bound the logins a replica begins (README "Bounds on input").
// A login start is the one request an anonymous client can make the SP
// remember, so it is limited per client, per replica, and by how much
// pending state it may leave in the store. Zero fields take the defaults;
// a negative rate or MaxPending switches that limit off.
type LoginLimits struct {
	// PerClientRate is the sustained login starts per second one client
	// may make on this replica, PerClientBurst how many at once. Default
	// 2/s, burst 40. A client is an IPv4 address or an IPv6 /64, as
	// Config.TrustedProxies defines it.
	PerClientRate  float64
	PerClientBurst int
	// TotalRate and TotalBurst bound the login starts of all clients on
	// this replica together. Default 50/s, burst 200.
	TotalRate  float64
	TotalBurst int
	// MaxPending caps the logins this replica began whose stored state may
	// still exist: those begun within the last RequestTTL + TombstoneTTL.
	// Each leaves at most one key, so the tracked requests in a store
	// shared by N replicas never exceed N × MaxPending. Default 20000.
	// Store mode only (stateless mode stores nothing).
	MaxPending int
	// Clients is how many clients the per-client limiter tracks; the
	// least recently seen is forgotten first. Default 16384.
	Clients int
}

func (l *LoginLimits) SetDefaults() {
	if l.PerClientRate == 0 {
		l.PerClientRate = 2
	}
	if l.PerClientBurst == 0 {
		l.PerClientBurst = 40
	}
	if l.TotalRate == 0 {
		l.TotalRate = 50
	}
	if l.TotalBurst == 0 {
		l.TotalBurst = 200
	}
	if l.MaxPending == 0 {
		l.MaxPending = 20000
	}
	if l.Clients == 0 {
		l.Clients = 16384
	}
}

func (l *LoginLimits) Validate() []error {
	var errs []error
	if l.PerClientRate >= 0 && l.PerClientBurst < 1 {
		errs = append(errs, fmt.Errorf("per-client login burst %d must be at least 1", l.PerClientBurst))
	}
	if l.TotalRate >= 0 && l.TotalBurst < 1 {
		errs = append(errs, fmt.Errorf("login burst %d must be at least 1", l.TotalBurst))
	}
	if l.Clients < 1 {
		errs = append(errs, fmt.Errorf("rate-limited clients %d must be at least 1", l.Clients))
	}
	for _, r := range []float64{l.PerClientRate, l.TotalRate} {
		if math.IsNaN(r) || math.IsInf(r, 0) {
			errs = append(errs, fmt.Errorf("login rate %v is not a number of starts per second", r))
		}
	}
	return errs
}

// Gate decides whether a login may start: per-client rate, replica
// rate, then the pending-logins ceiling.
type Gate struct {
	clients *clientLimiter // nil: off
	total   *rate.Limiter  // nil: off
	pending *pendingWindow // nil: off (or stateless)

}

func NewGate(l LoginLimits, window time.Duration, stateless bool) *Gate {
	g := &Gate{}
	if l.PerClientRate >= 0 {
		g.clients = newClientLimiter(rate.Limit(l.PerClientRate), l.PerClientBurst, l.Clients)
	}
	if l.TotalRate >= 0 {
		g.total = rate.NewLimiter(rate.Limit(l.TotalRate), l.TotalBurst)
	}
	if l.MaxPending >= 0 && !stateless {
		g.pending = newPendingWindow(window, l.MaxPending)
	}
	return g
}

// Admit reserves a login start for client at now, or returns the failure
// to answer with (its RetryAfter set). A reserved start that then fails to
// store its state is given back with release.
func (g *Gate) Admit(client netip.Addr, now time.Time) (*failure.Failure, time.Duration) {
	if g.clients != nil {
		if ok, wait := g.clients.allow(client, now); !ok {
			return &failure.Failure{Cause: failure.CauseLoginRateLimited, Reason: "client",
				Detail: fmt.Sprintf("client %s is over its login rate; retry in %v", forward.ClientKey(client), wait.Round(time.Millisecond))}, wait
		}
	}
	if g.total != nil {
		if ok, wait := reserve(g.total, now); !ok {
			return &failure.Failure{Cause: failure.CauseLoginRateLimited, Reason: "replica",
				Detail: fmt.Sprintf("this replica is over its total login rate; retry in %v", wait.Round(time.Millisecond))}, wait
		}
	}
	if g.pending != nil {
		if ok, wait, n := g.pending.add(now); !ok {
			return &failure.Failure{Cause: failure.CauseStoreFull, Reason: "pending-logins",
				Detail: fmt.Sprintf("%d logins begun here in the last %v, the ceiling (--max-pending-logins); the oldest leaves the window in %v",
					n, g.pending.window, wait.Round(time.Second))}, wait
		}
	}
	return nil, 0
}

// Release gives back a pending-login slot reserved at now whose state was
// not stored.
func (g *Gate) Release(now time.Time) {
	if g.pending != nil {
		g.pending.remove(now)
	}
}

// reserve takes a token from l at now, or reports how long until one is
// there without taking it.
func reserve(l *rate.Limiter, now time.Time) (bool, time.Duration) {
	r := l.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Minute
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// clientLimiter is a token bucket per client, for at most max clients: the
// least recently seen client is forgotten when a new one arrives, so a
// flood from many addresses costs bounded memory (about 200 bytes a
// client).
type clientLimiter struct {
	mu    sync.Mutex
	limit rate.Limit
	burst int
	max   int
	byKey map[netip.Addr]*list.Element
	lru   *list.List // front: most recently seen; values *clientBucket
}

type clientBucket struct {
	key netip.Addr
	lim *rate.Limiter
}

func newClientLimiter(limit rate.Limit, burst, max int) *clientLimiter {
	return &clientLimiter{limit: limit, burst: burst, max: max, byKey: map[netip.Addr]*list.Element{}, lru: list.New()}
}

func (c *clientLimiter) allow(client netip.Addr, now time.Time) (bool, time.Duration) {
	key := forward.ClientKey(client)
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[key]
	if ok {
		c.lru.MoveToFront(e)
	} else {
		if c.lru.Len() >= c.max {
			oldest := c.lru.Back()
			c.lru.Remove(oldest)
			delete(c.byKey, oldest.Value.(*clientBucket).key)
		}
		e = c.lru.PushFront(&clientBucket{key: key, lim: rate.NewLimiter(c.limit, c.burst)})
		c.byKey[key] = e
	}
	return reserve(e.Value.(*clientBucket).lim, now)
}

func (c *clientLimiter) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// pendingWindow counts the login starts of the last window in buckets, and
// refuses a start that would make the count exceed limit. A start at t
// counts until the end of its bucket plus window: never less than the life
// of the state it stored, so the count is an upper bound on this replica's
// tracked requests in the store.
type pendingWindow struct {
	mu      sync.Mutex
	window  time.Duration
	width   time.Duration
	limit   int
	buckets []pendingBucket // oldest first
	total   int
}

type pendingBucket struct {
	start time.Time
	n     int
}

// pendingBuckets is how finely the window is cut: a start is counted at
// most window/pendingBuckets longer than its state can live.
const pendingBuckets = 60

func newPendingWindow(window time.Duration, limit int) *pendingWindow {
	return &pendingWindow{window: window, width: max(window/pendingBuckets, time.Millisecond), limit: limit}
}

func (p *pendingWindow) expire(now time.Time) {
	i := 0
	for ; i < len(p.buckets) && !now.Before(p.buckets[i].start.Add(p.width+p.window)); i++ {
		p.total -= p.buckets[i].n
	}
	p.buckets = p.buckets[i:]
}

// add counts a start at now, or reports how long until one may start and
// how many are counted.
func (p *pendingWindow) add(now time.Time) (bool, time.Duration, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire(now)
	if p.total >= p.limit {
		wait := time.Second
		if len(p.buckets) > 0 {
			wait = max(p.buckets[0].start.Add(p.width+p.window).Sub(now), time.Second)
		}
		return false, wait, p.total
	}
	start := now.Truncate(p.width)
	if n := len(p.buckets); n > 0 && !p.buckets[n-1].start.Before(start) {
		p.buckets[n-1].n++
	} else {
		p.buckets = append(p.buckets, pendingBucket{start: start, n: 1})
	}
	p.total++
	return true, 0, p.total
}

// remove uncounts a start made at now (whose state was not stored).
func (p *pendingWindow) remove(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := now.Truncate(p.width)
	for i := len(p.buckets) - 1; i >= 0; i-- {
		if p.buckets[i].start.Equal(start) && p.buckets[i].n > 0 {
			p.buckets[i].n--
			p.total--
			return
		}
	}
}

func (p *pendingWindow) count(now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire(now)
	return p.total
}

// ClientAddress is the client address of r as the ClientIP middleware
// (mounted at the top of the router) found it: the TCP peer, or, from a
// trusted proxy, the first untrusted address of X-Forwarded-For
// (forward.Trusted.ClientAddr). Invalid if neither could be read.
func ClientAddress(r *http.Request) netip.Addr {
	a, _ := r.Context().Value(clientKeyCtx{}).(netip.Addr)
	return a
}

type clientKeyCtx struct{}

// ClientIP is the middleware that finds the client address, by the one rule
// every samlha proxy follows (package forward).
func ClientIP(trusted forward.Trusted) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a := trusted.ClientAddr(r)
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientKeyCtx{}, a)))
		})
	}
}

// Register exports the state of the login limits; now is the clock.
func (g *Gate) Register(reg prometheus.Registerer, now func() time.Time) {
	limit := -1.0
	if g.pending != nil {
		limit = float64(g.pending.limit)
	}
	pendingLimit := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "samlha_sp_pending_logins_limit",
		Help: "The ceiling of samlha_sp_pending_logins (--max-pending-logins); -1 when off or in stateless mode.",
	})
	pendingLimit.Set(limit)
	reg.MustRegister(pendingLimit,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "samlha_sp_pending_logins",
			Help: "Logins this replica began within the last request TTL + tombstone TTL: an upper bound on the tracked requests it has in the store.",
		}, func() float64 {
			if g.pending == nil {
				return 0
			}
			return float64(g.pending.count(now()))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "samlha_sp_login_capacity_full",
			Help: "1 while the pending-logins ceiling refuses new logins (store-full, 503); sessions and logins in progress are still served.",
		}, func() float64 {
			if g.pending != nil && g.pending.count(now()) >= g.pending.limit {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "samlha_sp_rate_limited_clients",
			Help: "Clients the per-client login limiter tracks (at most --rate-limit-clients).",
		}, func() float64 {
			if g.clients == nil {
				return 0
			}
			return float64(g.clients.len())
		}))
}

// Capacity describes the pending-logins ceiling for /readyz at now: "ok
// ...", or "full ..." while new logins are refused.
func (g *Gate) Capacity(now time.Time) string {
	p := g.pending
	if p == nil {
		return "ok (no pending-logins ceiling)"
	}
	n := p.count(now)
	if n >= p.limit {
		return fmt.Sprintf("full: %d of %d pending logins; new logins are refused with store-full, sessions and logins in progress are served", n, p.limit)
	}
	return fmt.Sprintf("ok: %d of %d pending logins", n, p.limit)
}
