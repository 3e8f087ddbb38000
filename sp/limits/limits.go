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
	// PerClientPending is the share of MaxPending one client may hold:
	// its starts in the window less the logins it finished. Default (0):
	// 1% of MaxPending, at least 10; negative: off. Off too without a
	// ceiling (stateless mode, MaxPending off) and without the per-client
	// rate, whose state it shares.
	PerClientPending int
}

// LightStarts: a client with fewer starts than this in the window, or
// holding no pending login, is light; past half the ceiling only light
// clients may start, and only they may take the last quarter of the
// replica's burst.
const LightStarts = 4

// share is the per-client share of pending logins, or 0 when off.
func (l LoginLimits) share() int {
	if l.PerClientPending < 0 || l.MaxPending <= 0 || l.PerClientRate < 0 {
		return 0
	}
	if l.PerClientPending > 0 {
		return l.PerClientPending
	}
	return max(l.MaxPending/100, 10)
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

// Gate decides whether a login may start: per-client rate and share of
// pending logins, replica rate (its last quarter kept for light clients),
// then the pending-logins ceiling, of which heavy clients may fill only
// half. Stored state is never evicted: only new starts are refused.
type Gate struct {
	mu      sync.Mutex
	clients *clientLimiter // nil: off
	total   *rate.Limiter  // nil: off
	reserve float64        // tokens of total only light clients may take
	pending *pendingWindow // nil: off (or stateless)
	share   int            // per-client share of pending; 0: off
}

func NewGate(l LoginLimits, window time.Duration, stateless bool) *Gate {
	g := &Gate{}
	if l.PerClientRate >= 0 {
		g.clients = newClientLimiter(rate.Limit(l.PerClientRate), l.PerClientBurst, l.Clients, window)
	}
	if l.TotalRate >= 0 {
		g.total = rate.NewLimiter(rate.Limit(l.TotalRate), l.TotalBurst)
		g.reserve = float64(l.TotalBurst / 4)
	}
	if l.MaxPending >= 0 && !stateless {
		g.pending = newPendingWindow(window, l.MaxPending)
		g.share = l.share()
	}
	return g
}

// refusal is one limit's verdict: how long until it lets the start through.
type refusal struct {
	wait   time.Duration
	cause  failure.Cause
	reason string
	detail string
}

// Admit reserves a login start for client at now, or returns the failure
// to answer with and how long until the limits let it through (the
// longest wait of the limits that refuse it, so a retry then is admitted
// unless others started meanwhile). Nothing is taken from any limit when
// the start is refused. A reserved start that then fails to store its
// state is given back with Release.
func (g *Gate) Admit(client netip.Addr, now time.Time) (*failure.Failure, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var c *clientBucket
	if g.clients != nil {
		c = g.clients.get(client, now)
	}
	worst := refusal{}
	refuse := func(r refusal) {
		if r.wait > worst.wait {
			worst = r
		}
	}
	n := 0
	if g.pending != nil {
		g.pending.expire(now)
		n = g.pending.total
		if n >= g.pending.limit {
			refuse(refusal{g.pending.until(now, g.pending.limit), failure.CauseStoreFull, "pending-logins",
				fmt.Sprintf("%d logins begun here in the last %v, the ceiling (--max-pending-logins)", n, g.pending.window)})
		}
	}
	light := true
	if c != nil {
		held, starts := c.counts()
		light = starts < LightStarts || held == 0
		if g.share > 0 && held >= g.share {
			refuse(refusal{c.until(now, func(h, _ int) bool { return h < g.share }), failure.CauseLoginRateLimited, "client-share",
				fmt.Sprintf("client %s holds %d pending logins, its share (--max-pending-logins-per-client %d)", forward.ClientKey(client), held, g.share)})
		}
		if w := tokenWait(c.lim, now, 1); w > 0 {
			refuse(refusal{w, failure.CauseLoginRateLimited, "client", fmt.Sprintf("client %s is over its login rate", forward.ClientKey(client))})
		}
	}
	if g.total != nil {
		if w := tokenWait(g.total, now, 1); w > 0 {
			refuse(refusal{w, failure.CauseLoginRateLimited, "replica", "this replica is over its total login rate"})
		}
	}
	if !light {
		// A heavy client passes once it is light, or once the ceiling is
		// under half and the replica's reserve is untouched.
		var half, res time.Duration
		if g.pending != nil && n >= g.pending.limit/2 {
			half = g.pending.until(now, g.pending.limit/2)
		}
		if g.total != nil {
			res = tokenWait(g.total, now, 1+g.reserve)
		}
		if heavy := max(half, res); heavy > 0 {
			toLight := c.until(now, func(h, s int) bool { return s < LightStarts || h == 0 })
			refuse(refusal{min(toLight, heavy), failure.CauseLoginRateLimited, "shedding",
				fmt.Sprintf("client %s made %d or more starts in the last %v and this replica is shedding heavy clients (past half of --max-pending-logins, or into the last quarter of --login-burst)",
					forward.ClientKey(client), LightStarts, g.pending.windowOr(0))})
		}
	}
	if worst.wait > 0 {
		return &failure.Failure{Cause: worst.cause, Reason: worst.reason,
			Detail: fmt.Sprintf("%s; retry in %v", worst.detail, worst.wait.Round(time.Millisecond))}, worst.wait
	}
	if c != nil {
		c.lim.AllowN(now, 1)
		c.add(now, 1)
	}
	if g.total != nil {
		g.total.AllowN(now, 1)
	}
	if g.pending != nil {
		g.pending.add(now)
	}
	return nil, 0
}

// Release gives back a start Admit reserved for client at now whose state
// was not stored: its pending-login slot and the client's count.
func (g *Gate) Release(client netip.Addr, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending != nil {
		g.pending.remove(now)
	}
	if c := g.clients.lookup(client); c != nil {
		c.done(now, true)
	}
}

// Done gives client back one pending login: a login of its finished (the
// ACS consumed its state). The ceiling's count is not given back, since
// the finished login leaves a tombstone in the store.
func (g *Gate) Done(client netip.Addr, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.clients.lookup(client); c != nil {
		c.done(now, false)
	}
}

// tokenWait is how long until l holds need tokens at now (0: it does).
func tokenWait(l *rate.Limiter, now time.Time, need float64) time.Duration {
	have := l.TokensAt(now)
	if have >= need {
		return 0
	}
	if need > float64(l.Burst()) {
		return time.Minute
	}
	return time.Duration(math.Ceil((need - have) / float64(l.Limit()) * float64(time.Second)))
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

// clientLimiter is a token bucket and a count of pending logins per
// client, for at most max clients: the least recently seen client is
// forgotten first when a new one arrives, so a flood from many addresses
// costs bounded memory (about 250 bytes a client). Its methods run under
// Gate.mu.
type clientLimiter struct {
	limit rate.Limit
	burst int
	max   int
	width time.Duration // of a client's count buckets: window/(clientSlots-1)
	byKey map[netip.Addr]*list.Element
	lru   *list.List // front: most recently seen; values *clientBucket
}

// clientSlots buckets cover a client's window: a start in bucket b counts
// until bucket b+clientSlots begins, at least a window after it.
const clientSlots = 5

type clientBucket struct {
	key    netip.Addr
	lim    *rate.Limiter
	width  time.Duration
	epoch  int64               // the newest bucket's index (time / width)
	held   [clientSlots]uint32 // starts less finished logins, by bucket
	starts [clientSlots]uint16 // starts, by bucket (saturating)
}

func newClientLimiter(limit rate.Limit, burst, maxClients int, window time.Duration) *clientLimiter {
	return &clientLimiter{limit: limit, burst: burst, max: maxClients, width: max(window/(clientSlots-1), time.Millisecond),
		byKey: map[netip.Addr]*list.Element{}, lru: list.New()}
}

// get returns client's state, made or moved to the front, aged to now.
func (c *clientLimiter) get(client netip.Addr, now time.Time) *clientBucket {
	key := forward.ClientKey(client)
	e, ok := c.byKey[key]
	if ok {
		c.lru.MoveToFront(e)
	} else {
		if c.lru.Len() >= c.max {
			oldest := c.lru.Back()
			c.lru.Remove(oldest)
			delete(c.byKey, oldest.Value.(*clientBucket).key)
		}
		e = c.lru.PushFront(&clientBucket{key: key, lim: rate.NewLimiter(c.limit, c.burst), width: c.width, epoch: now.UnixNano() / int64(c.width)})
		c.byKey[key] = e
	}
	b := e.Value.(*clientBucket)
	b.age(now)
	return b
}

// lookup returns client's state if it is tracked (nil-safe).
func (c *clientLimiter) lookup(client netip.Addr) *clientBucket {
	if c == nil {
		return nil
	}
	if e, ok := c.byKey[forward.ClientKey(client)]; ok {
		return e.Value.(*clientBucket)
	}
	return nil
}

// allow takes one of client's tokens at now, or says how long until one.
func (c *clientLimiter) allow(client netip.Addr, now time.Time) (bool, time.Duration) {
	return reserve(c.get(client, now).lim, now)
}

func (c *clientLimiter) len() int { return c.lru.Len() }

// age clears the buckets that have left the window at now.
func (b *clientBucket) age(now time.Time) {
	e := now.UnixNano() / int64(b.width)
	for ; b.epoch < e; b.epoch++ {
		i := (b.epoch + 1) % clientSlots
		b.held[i], b.starts[i] = 0, 0
	}
}

func (b *clientBucket) counts() (held, starts int) {
	for i := range clientSlots {
		held += int(b.held[i])
		starts += int(b.starts[i])
	}
	return held, starts
}

func (b *clientBucket) add(now time.Time, n int) {
	b.age(now)
	i := b.epoch % clientSlots
	b.held[i] = uint32(min(int64(b.held[i])+int64(n), math.MaxUint32))
	b.starts[i] = uint16(min(int(b.starts[i])+n, math.MaxUint16))
}

// done takes one pending login off the newest bucket holding one (and a
// start, for a start given back).
func (b *clientBucket) done(now time.Time, unstart bool) {
	b.age(now)
	for k := range int64(clientSlots) {
		i := (b.epoch - k + clientSlots) % clientSlots
		if b.held[i] > 0 {
			b.held[i]--
			if unstart && b.starts[i] > 0 {
				b.starts[i]--
			}
			return
		}
	}
}

// until is how long from now until ok holds of the client's counts, as
// its buckets leave the window with no new start.
func (b *clientBucket) until(now time.Time, ok func(held, starts int) bool) time.Duration {
	held, starts := b.counts()
	for k := int64(clientSlots - 1); k >= 0; k-- {
		if ok(held, starts) {
			break
		}
		bucket := b.epoch - k
		i := bucket % clientSlots
		held -= int(b.held[i])
		starts -= int(b.starts[i])
		if ok(held, starts) {
			return time.Unix(0, (bucket+clientSlots)*int64(b.width)).Sub(now)
		}
	}
	return 0
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

// until is how long from now until fewer than limit starts are counted,
// with no new start (the count has been expired to now).
func (p *pendingWindow) until(now time.Time, limit int) time.Duration {
	n := p.total
	for _, b := range p.buckets {
		if n < limit {
			break
		}
		n -= b.n
		if n < limit {
			return max(b.start.Add(p.width+p.window).Sub(now), 0)
		}
	}
	return 0
}

func (p *pendingWindow) windowOr(d time.Duration) time.Duration {
	if p == nil {
		return d
	}
	return p.window
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

// snapshot is the state of the limits at now, read under the gate's lock.
type snapshot struct {
	pending, limit int // limit -1: no ceiling
	clients        int
	topHeld        int // the most pending logins one tracked client holds
}

func (g *Gate) snapshot(now time.Time, top bool) snapshot {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := snapshot{limit: -1}
	if g.pending != nil {
		s.pending, s.limit = g.pending.count(now), g.pending.limit
	}
	if g.clients != nil {
		s.clients = g.clients.len()
		for e := g.clients.lru.Front(); top && e != nil; e = e.Next() {
			b := e.Value.(*clientBucket)
			b.age(now)
			s.topHeld = max(s.topHeld, int(b.held[0]+b.held[1]+b.held[2]+b.held[3]+b.held[4]))
		}
	}
	return s
}

// Logins says how this replica admits new logins at now: "ok"; "shedding"
// past half the ceiling, where only light clients may start; "full" at the
// ceiling, where it refuses every new login.
func (g *Gate) Logins(now time.Time) string {
	s := g.snapshot(now, false)
	switch {
	case s.limit < 0:
		return "ok"
	case s.pending >= s.limit:
		return "full"
	case s.pending >= s.limit/2:
		return "shedding"
	}
	return "ok"
}

// Register exports the state of the login limits; now is the clock.
func (g *Gate) Register(reg prometheus.Registerer, now func() time.Time) {
	limit, share := -1.0, -1.0
	if g.pending != nil {
		limit = float64(g.pending.limit)
	}
	if g.share > 0 {
		share = float64(g.share)
	}
	pendingLimit := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "samlha_sp_pending_logins_limit",
		Help: "The ceiling of samlha_sp_pending_logins (--max-pending-logins); -1 when off or in stateless mode.",
	})
	pendingLimit.Set(limit)
	shareLimit := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "samlha_sp_pending_logins_per_client_limit",
		Help: "The pending logins one client may hold (--max-pending-logins-per-client); -1 when off.",
	})
	shareLimit.Set(share)
	gauge := func(name, help string, f func(snapshot) float64, top bool) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(g.snapshot(now(), top)) })
	}
	reg.MustRegister(pendingLimit, shareLimit,
		gauge("samlha_sp_pending_logins", "Logins this replica began within the last request TTL + tombstone TTL: an upper bound on the tracked requests it has in the store.",
			func(s snapshot) float64 { return float64(s.pending) }, false),
		gauge("samlha_sp_login_capacity_full", "1 while the pending-logins ceiling refuses new logins (store-full, 503); sessions and logins in progress are still served.",
			func(s snapshot) float64 { return b2f(s.limit >= 0 && s.pending >= s.limit) }, false),
		gauge("samlha_sp_login_shedding", "1 while past half the pending-logins ceiling, where only light clients may begin logins.",
			func(s snapshot) float64 { return b2f(s.limit >= 0 && s.pending >= s.limit/2) }, false),
		gauge("samlha_sp_rate_limited_clients", "Clients the per-client login limiter tracks (at most --rate-limit-clients).",
			func(s snapshot) float64 { return float64(s.clients) }, false),
		gauge("samlha_sp_pending_logins_top_client", "The most pending logins one tracked client holds (compare samlha_sp_pending_logins_per_client_limit).",
			func(s snapshot) float64 { return float64(s.topHeld) }, true))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Capacity describes the pending-logins ceiling for /readyz at now.
func (g *Gate) Capacity(now time.Time) string {
	s := g.snapshot(now, false)
	if s.limit < 0 {
		return "ok (no pending-logins ceiling)"
	}
	switch {
	case s.pending >= s.limit:
		return fmt.Sprintf("full: %d of %d pending logins; new logins are refused with store-full, sessions and logins in progress are served", s.pending, s.limit)
	case s.pending >= s.limit/2:
		return fmt.Sprintf("shedding: %d of %d pending logins; only light clients (fewer than %d starts in the window, or none pending) may begin logins", s.pending, s.limit, LightStarts)
	}
	return fmt.Sprintf("ok: %d of %d pending logins", s.pending, s.limit)
}
