package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/samlha/samlha/store"
)

// DefaultFailoverBudget is how long, beyond its timeout, a call behind
// Sentinels may wait and retry while the master fails over (URL parameter
// failover_budget). A killed master is promoted away from after the
// Sentinel's down-after-milliseconds plus about two seconds (about three
// seconds with the lab's 1 s); five seconds covers that with room to spare,
// and is well under the SP's HTTP write timeout (30 s) and a balancer's
// response timeout (60 s by default in stickyproxy).
const DefaultFailoverBudget = 5 * time.Second

// MaxFailoverBudget bounds failover_budget: a call held longer would
// outlast the SP's HTTP write timeout (30 s, with the store's timeout on
// top) and a balancer's response timeout, so its answer would reach
// nobody while the held request kept its goroutine and connection.
const MaxFailoverBudget = 20 * time.Second

// Operations that must not run twice are made safe to resend behind
// Sentinels: each call draws a random token, and its script writes, in the
// same atomic step as its effect, a record of its result under
// prefix+"once:"+token, kept for recordTTL. A resent call whose first
// attempt ran (its reply was lost with its connection) finds the record and
// returns the first attempt's result instead of running again: its own
// write is never reported as another caller's (ErrExists, or a Swap
// returning its own value as the one it replaced). The record replicates
// with the effect (a script's writes reach the replica as one
// transaction), so a promoted replica holds both or neither: if neither,
// the resent call runs for the first time there.
//
// Only writes that happened are recorded: a refused PutIfAbsent, a Swap of
// an absent key or a Commit whose guard failed wrote nothing, and is
// simply run again.

// putIfAbsentScript: KEYS[1] the key, KEYS[2] the record; ARGV value, TTL
// in ms, the record's TTL in ms. Reply 1 written (now or by this call's
// earlier attempt), 0 the key held a live value.
var putIfAbsentScript = newScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  return 1
end
return 0
`)

// swapScript: KEYS[1] the key, KEYS[2] the record; ARGV value, TTL in ms,
// the record's TTL in ms. Reply {0} no live value (nothing written), {1,
// old} swapped (now or by this call's earlier attempt, whose old value the
// record keeps).
var swapScript = newScript(`
local done = redis.call('GET', KEYS[2])
if done then return {1, done} end
local old = redis.call('GET', KEYS[1])
if old == false then return {0} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], old, 'PX', ARGV[3])
return {1, old}
`)

// recording reports whether this store's non-idempotent operations record
// their results (see above): behind Sentinels, where they are resent.
func (s *Store) recording() bool { return s.follow != nil }

// recordKey returns a new record key for one call.
func (s *Store) recordKey() string { return s.prefix + "once:" + rand.Text() }

// recordTTL is how long a record is kept, in ms: well past the last resend
// of its call, which ends within the timeout plus the failover budget.
func (s *Store) recordTTL() int64 {
	return ttlArg(2*(s.timeout+s.budget) + time.Second)
}

// putIfAbsentCmd returns PutIfAbsent's command: SET NX, or behind
// Sentinels putIfAbsentScript (sent as EVAL, so that it can go in a
// pipeline: no NOSCRIPT to handle). See created.
func (s *Store) putIfAbsentCmd(ctx context.Context, key string, value []byte, ttl time.Duration) goredis.Cmder {
	if !s.recording() {
		return once{Cmder: goredis.NewStatusCmd(ctx, s.setCmd(key, value, ttl, "nx")...)}
	}
	return once{Cmder: goredis.NewCmd(ctx, "eval", putIfAbsentScript.src, 2, s.prefix+key, s.recordKey(),
		value, ttlArg(ttl), s.recordTTL()), recorded: true}
}

// created reports whether a putIfAbsentCmd that returned no error wrote
// its value (SET NX answers nil, an error to go-redis, when it does not).
func (s *Store) created(cmd goredis.Cmder) bool {
	if o, ok := cmd.(once); ok {
		cmd = o.Cmder
	}
	if c, ok := cmd.(*goredis.Cmd); ok {
		n, err := c.Int64()
		return err == nil && n == 1
	}
	return cmd.Err() == nil
}

// swapRecorded is Swap with swapScript.
func (s *Store) swapRecorded(ctx, cctx context.Context, key string, value []byte, ttl time.Duration) ([]byte, error) {
	const op = "swap"
	reply, err := s.runOnce(cctx, swapScript, []string{s.prefix + key, s.recordKey()},
		[]any{value, ttlArg(ttl), s.recordTTL()}, true)
	if err != nil {
		return nil, s.fail(ctx, cctx, op, err)
	}
	r, _ := reply.([]any)
	switch code, _ := firstInt(r); {
	case code == 0 && len(r) == 1:
		return nil, store.ErrNotFound
	case code == 1 && len(r) == 2:
		old, _ := r[1].(string)
		return []byte(old), nil
	}
	return nil, s.fail(ctx, cctx, op, fmt.Errorf("unexpected reply %v to the swap script", reply))
}

func firstInt(r []any) (int64, bool) {
	if len(r) == 0 {
		return 0, false
	}
	n, ok := r[0].(int64)
	return n, ok
}

// connLost reports whether err shows that a command's connection broke
// before its reply came (reset, closed, EOF): the server may or may not
// have run it. A timeout is not among them: a server that stalls is not
// failing over, and is given up on after the store's timeout as before.
func connLost(err error) bool {
	for _, e := range []error{io.EOF, io.ErrUnexpectedEOF, syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNABORTED, net.ErrClosed} {
		if errors.Is(err, e) {
			return true
		}
	}
	var op *net.OpError
	return errors.As(err, &op) && (op.Op == "read" || op.Op == "write") && !op.Timeout()
}
