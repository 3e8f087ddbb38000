package stickyproxy

import (
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/samlha/samlha/stickyproxy/upstream"
)

// target is the live state of one upstream.
type target struct {
	name   string
	url    *url.URL
	weight int
	idx    int

	healthy  atomic.Bool
	draining atomic.Bool
	// downUntil (unix nanoseconds) is set when passive checks mark the
	// target down while active checks are off: it is tried again after it.
	downUntil    atomic.Int64
	passiveFails atomic.Int32
	fails5xx     atomic.Int32
	inflight     atomic.Int64

	requests       atomic.Uint64
	pinnedRequests atomic.Uint64
	pinsIssued     atomic.Uint64

	// cookie caches the Set-Cookie values sealed for the current expiry
	// second, so a second's worth of responses share one seal.
	cookie atomic.Pointer[sealedCookie]

	// hdrName is the precomputed X-Stickyproxy-Target header value.
	hdrName []string
	// Precomputed metric handles.
	mRequests [numDecisions]prometheus.Counter
	mLatency  prometheus.Observer

	// The health checker's own counters (touched by its goroutine only).
	rise, fall int

	// fast engine connection pool.
	pool upstream.Pool
}

// sealedCookie is the Set-Cookie header values for one target and one
// expiry second.
type sealedCookie struct {
	expires int64
	values  []string // the cookie, and its twin when on
	value   string   // the sealed value itself
}

// up says whether the target is healthy at now (unix nanoseconds).
func (t *target) up(now int64) bool {
	if t.healthy.Load() {
		return true
	}
	d := t.downUntil.Load()
	return d != 0 && now >= d
}

// roundRobin walks a schedule in which each target appears weight times,
// spread out (smooth weighted round robin, computed once).
type roundRobin struct {
	schedule []*target
	distinct []*target // each target once, in order
	next     atomic.Uint64
}

func newRoundRobin(ts []*target) *roundRobin {
	// Smooth weighted round robin (nginx) over one full cycle.
	total := 0
	for _, t := range ts {
		total += t.weight
	}
	cur := make([]int, len(ts))
	rr := &roundRobin{distinct: ts}
	for range total {
		best := -1
		for i, t := range ts {
			cur[i] += t.weight
			if best < 0 || cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		rr.schedule = append(rr.schedule, ts[best])
	}
	return rr
}

// pick returns the next target that f allows, or nil.
//
// When the scheduled target is not allowed (down, draining, already
// tried), its turn is dealt among the allowed targets by the same counter,
// not handed to the next one in the schedule: otherwise a dead target's
// whole share would fall on its successor, which would then carry twice
// the load of the others.
func (rr *roundRobin) pick(p *Proxy, f filter) *target {
	n := uint64(len(rr.schedule))
	start := rr.next.Add(1) - 1
	if t := rr.schedule[start%n]; p.ok(t, &f) {
		return t
	}
	var allowed [16]*target
	ok := allowed[:0]
	for _, t := range rr.distinct {
		if p.ok(t, &f) {
			ok = append(ok, t)
		}
	}
	if len(ok) == 0 {
		return nil
	}
	// The cycle number spreads successive misses of one slot over the
	// allowed targets whatever the schedule's length.
	return ok[(start/n+start%n)%uint64(len(ok))]
}

// leastOutstanding picks the target with the fewest in-flight requests per
// unit of weight, breaking ties by rotating the starting point.
type leastOutstanding struct {
	targets []*target
	next    atomic.Uint64
}

// pick returns the least loaded target that f allows, or nil.
func (lo *leastOutstanding) pick(p *Proxy, f filter) *target {
	n := uint64(len(lo.targets))
	start := lo.next.Add(1) - 1
	var best *target
	for i := range n {
		t := lo.targets[(start+i)%n]
		if !p.ok(t, &f) {
			continue
		}
		// Compare in/w < best.in/best.w without division.
		if best == nil || t.inflight.Load()*int64(best.weight) < best.inflight.Load()*int64(t.weight) {
			best = t
		}
	}
	return best
}

// imbalance counts requests per target in a sliding window of buckets, for
// the load-imbalance gauge.
type imbalance struct {
	bucket time.Duration
	mu     sync.Mutex // guards resets
	slots  []imbalanceSlot
}

type imbalanceSlot struct {
	epoch  atomic.Int64
	counts []atomic.Uint64
}

const imbalanceSlots = 10

func newImbalance(window time.Duration, targets int) *imbalance {
	im := &imbalance{bucket: window / imbalanceSlots, slots: make([]imbalanceSlot, imbalanceSlots)}
	for i := range im.slots {
		im.slots[i].counts = make([]atomic.Uint64, targets)
		im.slots[i].epoch.Store(-1)
	}
	return im
}

func (im *imbalance) add(now int64, idx int) {
	e := now / int64(im.bucket)
	s := &im.slots[e%imbalanceSlots]
	if s.epoch.Load() != e {
		im.mu.Lock()
		if s.epoch.Load() != e {
			for i := range s.counts {
				s.counts[i].Store(0)
			}
			s.epoch.Store(e)
		}
		im.mu.Unlock()
	}
	s.counts[idx].Add(1)
}

// ratio returns the busiest target's request count over the mean, across
// the window ending at now: 1 is perfectly even, len(targets) is everything
// on one target, 0 means no requests.
func (im *imbalance) ratio(now int64) float64 {
	e := now / int64(im.bucket)
	n := len(im.slots[0].counts)
	sums := make([]uint64, n)
	for i := range im.slots {
		s := &im.slots[i]
		if ep := s.epoch.Load(); ep > e-imbalanceSlots && ep <= e {
			for j := range sums {
				sums[j] += s.counts[j].Load()
			}
		}
	}
	var total, most uint64
	for _, v := range sums {
		total += v
		most = max(most, v)
	}
	if total == 0 {
		return 0
	}
	return float64(most) * float64(n) / float64(total)
}

// selector balances: it returns the next target that f allows, or nil.
// Round robin and least outstanding are the two; the proxy's fallback when
// a selector finds nothing is fail-open (Config.AllDown), the same for both.
//
// The filter goes by value: through an interface call a pointer to the
// caller's filter would escape to the heap, one allocation per request.
type selector interface {
	pick(p *Proxy, f filter) *target
}

// selectors builds the selector for each Balance.
var selectors = map[Balance]func([]*target) selector{
	RoundRobin:       func(ts []*target) selector { return newRoundRobin(ts) },
	LeastOutstanding: func(ts []*target) selector { return &leastOutstanding{targets: ts} },
}
