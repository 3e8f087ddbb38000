package redis

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/samlha/samlha/store"
)

var _ store.FailoverWaiter = (*Store)(nil)

// FailoverBudget implements store.FailoverWaiter: how much longer than its
// timeout a call may take while the master fails over (0 but behind
// Sentinels).
func (s *Store) FailoverBudget() time.Duration {
	if s.follow == nil {
		return 0
	}
	return s.budget
}

// Retries implements store.FailoverWaiter: how many times each operation
// was sent again (after an attempt that never ran or whose reply was lost)
// since the store was opened.
func (s *Store) Retries() map[string]uint64 {
	s.held.mu.Lock()
	defer s.held.mu.Unlock()
	return maps.Clone(s.held.retries)
}

// heldOps counts the store's retries, and times each failover as its
// callers met it: from the first attempt that failed because the master
// was gone to the first success of an attempt sent after that. The end of
// each such stretch is logged once, with how long it was.
type heldOps struct {
	since atomic.Int64 // UnixNano of the stretch's first failed attempt; 0: none

	mu      sync.Mutex
	retries map[string]uint64 // by operation, since the store opened
	// In the stretch under way:
	nRetried, nGaveUp int
}

// failing notes an attempt of op, begun at began, that failed because the
// master was gone: it begins a stretch if none is under way.
func (h *heldOps) failing(_ string, began time.Time) {
	h.since.CompareAndSwap(0, began.UnixNano())
}

// retried counts a resend of op.
func (h *heldOps) retried(op string) {
	if op == "" {
		return // the store's own background work
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.retries == nil {
		h.retries = map[string]uint64{}
	}
	h.retries[op]++
	h.nRetried++
}

// gaveUp counts a call of op that failed after waiting for the master
// (not a readiness check: Ping and Open's verify do not spend the budget).
func (h *heldOps) gaveUp(op string) {
	if op == "" || op == "ping" || op == "verify" {
		return
	}
	h.mu.Lock()
	h.nGaveUp++
	h.mu.Unlock()
}

// succeeded notes an attempt of op, begun at began, that succeeded: if it
// was sent after a stretch began, the stretch is over and s logs it.
func (h *heldOps) succeeded(s *Store, began time.Time, op string, wasRetried bool) {
	since := h.since.Load()
	if since == 0 || began.UnixNano() < since || !h.since.CompareAndSwap(since, 0) {
		return
	}
	h.mu.Lock()
	retried, gaveUp := h.nRetried, h.nGaveUp
	h.nRetried, h.nGaveUp = 0, 0
	h.mu.Unlock()
	held := time.Since(time.Unix(0, since))
	master := ""
	if s.follow != nil {
		master = s.follow.current()
	}
	s.logger.Info("redis-sentinel: operations go through again after the master was unreachable",
		"master", master, "held", held.Round(time.Millisecond), "retries", retried,
		"failed_after_waiting", gaveUp, "failover_budget", s.budget, "first_op", op, "first_op_retried", wasRetried)
}
