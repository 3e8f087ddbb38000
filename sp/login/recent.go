package login

import (
	"sync"
	"time"
)

// maxRecent bounds the logins a replica remembers having finished or
// refused (about 100 bytes each: at most about 6 MiB).
const maxRecent = 1 << 16

// recent remembers, for a while, the RelayStates whose response this
// replica has parsed: another response for one of them goes the careful
// way (the store first), so a captured or forged response posted again and
// again costs one full parse per replica, not one per post. It is bounded
// (maxRecent, oldest forgotten first) and forgets after ttl.
type recent struct {
	ttl   time.Duration
	mu    sync.Mutex
	at    map[string]time.Time
	order []string // insertion order, a ring of maxRecent
	next  int
}

func newRecent(ttl time.Duration) *recent {
	return &recent{ttl: ttl, at: make(map[string]time.Time)}
}

func (c *recent) add(rs string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.at[rs]; ok {
		c.at[rs] = now
		return
	}
	if len(c.order) < maxRecent {
		c.order = append(c.order, rs)
	} else {
		delete(c.at, c.order[c.next])
		c.order[c.next] = rs
		c.next = (c.next + 1) % maxRecent
	}
	c.at[rs] = now
}

func (c *recent) seen(rs string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.at[rs]
	return ok && now.Sub(t) < c.ttl
}
