// Package redis is the Redis backend of store.Store, on go-redis's
// UniversalClient: a standalone server (redis://, rediss:// with TLS), a
// master found through Sentinel (redis-sentinel://) or a Redis Cluster
// (redis-cluster://). See ParseURL for the URL forms and their parameters.
//
// Each operation of store.Store is one Redis command on one key, and the
// optional ones one command (or script) too, so every replica sees the
// same state:
//
//	Put          SET k v PX ttl
//	PutIfAbsent  SET k v NX PX ttl          (nil reply: ErrExists)
//	Get          GET k                      (nil reply: ErrNotFound)
//	Swap         SET k v XX GET PX ttl      (Redis ≥ 7.0; nil reply: ErrNotFound, nothing written)
//	Delete       DEL k
//	PutBatch     the writes above in one pipeline (split by node on a Cluster)
//	Ping         SET of a short-lived random key and DEL of it, pipelined
//	Commit       EVALSHA of a Lua script (EVAL after NOSCRIPT); on a Cluster the
//	             writes in other slots than the swapped key follow in one pipeline
//	GetMany      MGET (a pipeline of GETs on a Cluster)
//	Publish      PUBLISH (SPUBLISH on a Cluster)
//	Subscribe    SUBSCRIBE (SSUBSCRIBE on a Cluster) on a connection of its own,
//	             with heartbeats PUBLISHed to itself (see Subscribe)
//
// Keys are the prefix followed by the caller's key, byte for byte. Only
// Commit touches several keys; on a Cluster it needs no hash tags (it
// splits by slot), so a "{" in a caller's key is harmless, though hash
// tags that put a commit's keys in one slot save its second round trip.
// TTLs are rounded up to whole milliseconds.
//
// Behind Sentinels (redis-sentinel://) the store follows the master
// itself rather than through go-redis's FailoverClient: see follower.
//
// The commands that must not run twice (PutIfAbsent, Swap, Commit, and a
// batch holding an IfAbsent write) are never retried by the client after a
// connection fails mid-call: a retry could report the command's own effect
// (the key it set, the value it replaced) as somebody else's. On a
// standalone server or a Cluster they fail with ErrUnavailable instead, and
// the operation may or may not have happened.
//
// Behind Sentinels the store rides out a failover within a budget (URL
// parameter failover_budget, default DefaultFailoverBudget): a command
// whose error shows it never reached a server that ran it (a refused dial,
// READONLY from a demoted master, ...; see neverRan), or whose connection
// broke before its reply came (see connLost), is sent again, each attempt
// within the store's timeout, to the master the store follows by then,
// until it succeeds or the timeout plus the budget has passed. So that a
// retried write is never mistaken for another caller's, the commands that
// must not run twice are Lua scripts there that record their result under
// a key of their own, named by a random token per call, in the same
// atomic step (see once.go): a retry whose first attempt ran finds that
// record and returns the first attempt's result.
//
// Errors are classified at this boundary: a nil reply becomes ErrNotFound
// or ErrExists; an error of the caller's context matches that error; a
// refused or lost connection, a timeout of our own per-call deadline, a pool
// timeout, LOADING, READONLY, CLUSTERDOWN, MASTERDOWN, a closed client and
// any other failure to perform the command match ErrUnavailable; Redis's OOM
// refusal (maxmemory with the noeviction policy) matches ErrFull. No error
// contains the password.
package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/samlha/samlha/store"
)

// MaxValueLen is the largest value Put accepts: Redis's default
// proto-max-bulk-len.
const MaxValueLen = 512 << 20

// Options configure a Store around its client.
type Options struct {
	// Prefix is prepended to every key. Empty means no prefix (ParseURL
	// sets DefaultPrefix unless the URL says otherwise).
	Prefix string
	// Timeout bounds every call. Zero means DefaultTimeout.
	Timeout time.Duration
	// Kind and Location describe the store (store.Describer). Location
	// must not hold a password: use store.Redact.
	Kind, Location string
	// Logger receives the store's reports. Default: discard.
	Logger *slog.Logger
	// Heartbeat is how often a subscription publishes a heartbeat to
	// itself, and Liveness how long it stays live without receiving one
	// (its DeliveryBound). Zero means DefaultHeartbeat and
	// DefaultLiveness; Liveness is raised to at least twice Heartbeat.
	Heartbeat, Liveness time.Duration
	// FailoverBudget is how much longer than Timeout a call may take
	// behind Sentinels while the master fails over: the time it waits and
	// retries when the master is gone. Zero means none (retries only
	// within Timeout). ParseURL sets DefaultFailoverBudget for
	// redis-sentinel:// unless the URL says failover_budget.
	FailoverBudget time.Duration
}

// Store is a store.Store on Redis. Create it with Open, store.Open or New.
type Store struct {
	client   atomic.Pointer[clientRef]
	prefix   string
	timeout  time.Duration
	kind     string
	location string
	logger   *slog.Logger
	closed   atomic.Bool
	hooks    hooks

	heartbeat, liveness time.Duration
	subs                subscriptions

	follow *follower // behind Sentinels: follows the master they name
	budget time.Duration
	held   heldOps // retries and how long operations were held, per failover
}

var (
	_ store.Store     = (*Store)(nil)
	_ store.Describer = (*Store)(nil)
)

func init() {
	opener := func(ctx context.Context, u *url.URL, logger *slog.Logger) (store.Store, error) {
		return open(ctx, u, logger)
	}
	store.Register("redis", opener, "redis", "rediss", "redis-sentinel", "redis-cluster")
}

// New returns a store on client, which it owns: Close closes the client.
// New does no I/O.
func New(client goredis.UniversalClient, opts Options) *Store {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Kind == "" {
		opts.Kind = "redis"
	}
	if opts.Location == "" {
		opts.Location = opts.Kind + "://(client)"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.Liveness <= 0 {
		opts.Liveness = DefaultLiveness
	}
	opts.Liveness = max(opts.Liveness, 2*opts.Heartbeat)
	s := &Store{
		budget:    max(opts.FailoverBudget, 0),
		heartbeat: opts.Heartbeat,
		liveness:  opts.Liveness,
		prefix:    opts.Prefix,
		timeout:   opts.Timeout,
		kind:      opts.Kind,
		location:  opts.Location,
		logger:    opts.Logger,
	}
	s.client.Store(&clientRef{client})
	return s
}

// Open opens the store that rawURL names (see ParseURL). Unless the URL
// says verify=false it makes a round trip first, and fails with an error
// naming the URL (without its password) if the round trip fails.
func Open(ctx context.Context, rawURL string, logger *slog.Logger) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis: cannot parse store URL %q", store.Redact(rawURL))
	}
	s, err := open(ctx, u, logger)
	if err != nil {
		return nil, fmt.Errorf("redis: open %s: %w", store.Redact(rawURL), err)
	}
	return s, nil
}

func open(ctx context.Context, u *url.URL, logger *slog.Logger) (*Store, error) {
	cfg, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.Options.Logger = logger
	var s *Store
	if cfg.Client.MasterName != "" {
		s = newFollowing(ctx, cfg)
	} else {
		s = New(goredis.NewUniversalClient(&cfg.Client), cfg.Options)
	}
	if cfg.Verify {
		// The first round trip also dials (and may do a TLS handshake).
		if err := s.ping(ctx, "verify", cfg.Client.DialTimeout+s.timeout); err != nil {
			s.Close()
			return nil, fmt.Errorf("no round trip to %s (add verify=false to the URL to start without one, and let readiness report it): %w", s.kind, err)
		}
		s.checkEviction(ctx)
	}
	logger.Info("store opened", "kind", s.kind, "location", s.location, "prefix", s.prefix,
		"timeout", s.timeout, "failover_budget", s.FailoverBudget(), "verified", cfg.Verify)
	return s, nil
}

// checkEviction warns if the server may evict the store's keys: a
// maxmemory with a policy other than noeviction. Every key the store
// writes has a TTL, so the volatile-* policies take them as readily as the
// allkeys-* ones, and under memory pressure Redis would silently drop
// pending logins, sessions, and the records that refuse a replayed
// assertion or a second use of a login (a replay that should have been
// refused would then be accepted). With noeviction a full server refuses
// writes instead (ErrFull: a named failure). It reads INFO memory from
// each master (a Cluster's every one); a server that refuses INFO (an ACL
// without it, a managed Redis) is noted at debug level only, and nothing
// here fails the open.
func (s *Store) checkEviction(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	check := func(ctx context.Context, c goredis.Cmdable) error {
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			return err
		}
		maxmemory, policy := InfoField(info, "maxmemory"), InfoField(info, "maxmemory_policy")
		if maxmemory != "" && maxmemory != "0" && policy != "" && policy != "noeviction" {
			s.logger.Warn("redis may evict samlha's state under memory pressure: set maxmemory-policy noeviction, or maxmemory 0",
				"maxmemory", maxmemory, "maxmemory_policy", policy,
				"at_risk", "pending logins, sessions, and the records that refuse replayed assertions and reused logins")
		}
		return nil
	}
	var err error
	if cc, ok := s.cli().(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error { return check(ctx, c) })
	} else {
		err = check(ctx, s.cli())
	}
	if err != nil {
		s.logger.Debug("could not read the server's maxmemory-policy", "err", err)
	}
}

// InfoField returns the value of field in an INFO reply ("field:value"
// lines), or "".
func InfoField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), field+":"); ok {
			return v
		}
	}
	return ""
}

// newFollowing returns a store on the master that the Sentinels of cfg
// name, following it through failovers (see follower). Its first client
// dials whatever master a Sentinel names when it needs a connection; a
// new client replaces it as soon as one does.
func newFollowing(ctx context.Context, cfg *Config) *Store {
	s := New(nil, cfg.Options)
	s.follow = newFollower(s, cfg.Client)
	s.client.Store(&clientRef{s.follow.newClient("")})
	if cfg.Verify {
		// Open's round trip will say it if no Sentinel answers.
		cctx, cancel := context.WithTimeout(ctx, cfg.Client.DialTimeout+s.timeout)
		_, _ = s.follow.ask(cctx)
		cancel()
	}
	s.follow.start()
	return s
}

// Kind implements store.Describer: redis, redis-sentinel or redis-cluster.
func (s *Store) Kind() string { return s.kind }

// Location implements store.Describer: the URL without its password.
func (s *Store) Location() string { return s.location }

// Shared implements store.Describer: every client of the server (or
// Sentinel set, or Cluster) sees the same keys.
func (s *Store) Shared() bool { return true }

// Client returns the store's go-redis client, for diagnostics: the one in
// use now (after a Sentinel failover, the one that follows the new master).
func (s *Store) Client() goredis.UniversalClient { return s.cli() }

// clientRef holds the client in use, so that it can be replaced whole.
type clientRef struct{ goredis.UniversalClient }

func (s *Store) cli() goredis.UniversalClient { return s.client.Load().UniversalClient }

// once marks a command that must not be sent twice as it is: go-redis
// retries a command whose connection failed, which for these could report
// the command's own effect as another caller's. recorded marks one that
// records its result under a token of its own (see once.go): the store's
// own retries may send it again, which go-redis's cannot (they would not
// follow the master).
type once struct {
	goredis.Cmder
	recorded bool
}

func (once) NoRetry() bool { return true }

// resendable reports whether cmd may be sent again after its connection
// broke before the reply: it does the same thing twice, or it recognises
// its own earlier run.
func resendable(cmd goredis.Cmder) bool {
	o, ok := cmd.(once)
	return !ok || o.recorded
}

// call bounds ctx by the store's timeout (behind Sentinels, plus the
// failover budget, which only retries spend: each attempt is bounded by
// the timeout), after checking that the store is open and ctx is not done.
func (s *Store) call(ctx context.Context, op string) (context.Context, context.CancelFunc, error) {
	return s.callWithin(ctx, op, s.timeout+s.FailoverBudget())
}

func (s *Store) callWithin(ctx context.Context, op string, timeout time.Duration) (context.Context, context.CancelFunc, error) {
	if s.closed.Load() {
		return nil, nil, fmt.Errorf("redis %s: %w", op, store.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("redis %s: %w", op, err)
	}
	if s.follow != nil {
		// Only retries behind Sentinels need the operation's name (their
		// counts and log line); elsewhere the value would be one more
		// allocation per call for nothing.
		ctx = context.WithValue(ctx, opKey{}, op)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	return cctx, cancel, nil
}

type opKey struct{}

// opOf returns the name of the operation whose call ctx is ("" for the
// store's own background work).
func opOf(ctx context.Context) string {
	op, _ := ctx.Value(opKey{}).(string)
	return op
}

// fail classifies err, returned by op under cctx, a child of the caller's
// ctx bounded by the store's timeout. redis.Nil is the caller's to handle.
func (s *Store) fail(ctx, cctx context.Context, op string, err error) error {
	if cerr := ctxErr(ctx); cerr != nil {
		return fmt.Errorf("redis %s: %w", op, cerr)
	}
	if s.closed.Load() {
		return fmt.Errorf("redis %s: %w", op, store.ErrClosed)
	}
	if goredis.IsOOMError(err) {
		return fmt.Errorf("redis %s: %w: %w", op, store.ErrFull, err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || ctxErr(cctx) != nil {
		// Our own deadline, not the caller's: describe it without wrapping
		// the context error, which the caller would take for its own.
		within := fmt.Sprintf("the store's timeout of %v", s.timeout)
		if b := s.FailoverBudget(); b > 0 && op != "ping" && op != "verify" {
			within += fmt.Sprintf(" and failover budget of %v", b)
		}
		err = fmt.Errorf("no reply within %s (%v)", within, err)
	}
	return store.Unavailable("redis "+op, err)
}

// ctxErr returns ctx's error, or context.DeadlineExceeded if its deadline
// has passed though its timer has not fired yet: a socket deadline set
// from the context can fire first, and the failure is still the
// deadline's.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// ttlArg returns ttl in whole milliseconds, rounded up.
func ttlArg(ttl time.Duration) int64 {
	ms := int64(ttl / time.Millisecond)
	if ttl%time.Millisecond != 0 {
		ms++
	}
	return ms
}

func checkWrite(key string, value []byte, ttl time.Duration) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	if err := store.CheckTTL(ttl); err != nil {
		return err
	}
	return store.CheckValue(value, MaxValueLen)
}

// setCmd is SET key value PX ttl with extra arguments (NX, XX GET).
func (s *Store) setCmd(key string, value []byte, ttl time.Duration, extra ...any) []any {
	args := make([]any, 0, 5+len(extra))
	args = append(args, "set", s.prefix+key, value, "px", ttlArg(ttl))
	return append(args, extra...)
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return s.write(ctx, "put", key, value, ttl, false)
}

// PutIfAbsent implements store.Store.
func (s *Store) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return s.write(ctx, "put-if-absent", key, value, ttl, true)
}

func (s *Store) write(ctx context.Context, op, key string, value []byte, ttl time.Duration, ifAbsent bool) error {
	if err := checkWrite(key, value, ttl); err != nil {
		return err
	}
	cctx, cancel, err := s.call(ctx, op)
	if err != nil {
		return err
	}
	defer cancel()
	if ifAbsent {
		cmd := s.putIfAbsentCmd(cctx, key, value, ttl)
		err = s.process(cctx, cmd)
		if err == nil && !s.created(cmd) {
			err = goredis.Nil
		}
	} else {
		err = s.process(cctx, goredis.NewStatusCmd(cctx, s.setCmd(key, value, ttl)...))
	}
	switch {
	case err == nil:
		return nil
	case ifAbsent && errors.Is(err, goredis.Nil):
		return store.ErrExists
	default:
		return s.fail(ctx, cctx, op, err)
	}
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	const op = "get"
	if err := store.CheckKey(key); err != nil {
		return nil, err
	}
	cctx, cancel, err := s.call(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	cmd := goredis.NewStringCmd(cctx, "get", s.prefix+key)
	return s.value(ctx, cctx, op, cmd, s.process(cctx, cmd))
}

// value returns a copy of cmd's reply, or its error classified.
func (s *Store) value(ctx, cctx context.Context, op string, cmd *goredis.StringCmd, err error) ([]byte, error) {
	switch {
	case err == nil:
		// StringCmd.Bytes would share the reply's memory; the caller owns
		// what we return.
		return []byte(cmd.Val()), nil
	case errors.Is(err, goredis.Nil):
		return nil, store.ErrNotFound
	default:
		return nil, s.fail(ctx, cctx, op, err)
	}
}

// Swap implements store.Store, with SET XX GET.
func (s *Store) Swap(ctx context.Context, key string, value []byte, ttl time.Duration) ([]byte, error) {
	const op = "swap"
	if err := checkWrite(key, value, ttl); err != nil {
		return nil, err
	}
	cctx, cancel, err := s.call(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if s.recording() {
		return s.swapRecorded(ctx, cctx, key, value, ttl)
	}
	cmd := goredis.NewStringCmd(cctx, s.setCmd(key, value, ttl, "xx", "get")...)
	return s.value(ctx, cctx, op, cmd, s.process(cctx, once{Cmder: cmd}))
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	const op = "delete"
	if err := store.CheckKey(key); err != nil {
		return err
	}
	cctx, cancel, err := s.call(ctx, op)
	if err != nil {
		return err
	}
	defer cancel()
	if err := s.process(cctx, goredis.NewIntCmd(cctx, "del", s.prefix+key)); err != nil {
		return s.fail(ctx, cctx, op, err)
	}
	return nil
}

// process sends cmd on the client in use (see retrying), and again, on a
// Cluster, while it is refused with TRYAGAIN (see tryAgainWait). Only a
// single command is: in a pipeline the other commands may have run.
func (s *Store) process(ctx context.Context, cmd goredis.Cmder) error {
	for {
		err := s.retrying(ctx, func(actx context.Context) error { return s.cli().Process(actx, cmd) },
			func(err error) bool { return s.mayResend(cmd, err) })
		if err != nil && s.follow == nil && goredis.HasErrorPrefix(err, "TRYAGAIN") && sleepWithin(ctx, tryAgainWait) {
			continue
		}
		if err != nil {
			cmd.SetErr(err)
		}
		return err
	}
}

// mayResend reports whether cmd, which failed with err, may be sent again:
// it never ran, or its connection broke before the reply and sending it
// again is safe (see resendable).
func (s *Store) mayResend(cmd goredis.Cmder, err error) bool {
	return neverRan(err) || connLost(err) && resendable(cmd)
}

// pipeline sends cmds in one pipeline on the client in use (see retrying:
// the pipeline is sent again only if each of its commands either never ran
// or may be resent), and returns the first error; each command carries
// its own.
func (s *Store) pipeline(ctx context.Context, cmds []goredis.Cmder) error {
	sent := false
	err := s.retrying(ctx, func(actx context.Context) error {
		sent = true
		pipe := s.cli().Pipeline()
		for _, c := range cmds {
			c.SetErr(nil)
			pipe.Process(actx, c)
		}
		_, err := pipe.Exec(actx)
		return err
	}, func(error) bool {
		for _, c := range cmds {
			if c.Err() != nil && !s.mayResend(c, c.Err()) {
				return false
			}
		}
		return true
	})
	if err != nil {
		for _, c := range cmds {
			if !sent || c.Err() != nil {
				c.SetErr(err)
			}
		}
	}
	return err
}

// retrying runs send, one attempt of a command or pipeline, each attempt
// within the store's timeout. Behind a Sentinel, it holds the attempt
// while a replica is being promoted (see follower.event), and when an
// attempt failed in a way that allows another (resend reports it: it never
// ran, or it is safe to send again after a lost reply), it sends it again,
// within ctx (the timeout plus the failover budget), once the store
// follows the new master or after a short wait; any failure makes the
// store ask the Sentinels at once. If time runs out while retrying, the
// error says why the retry was needed.
func (s *Store) retrying(ctx context.Context, send func(context.Context) error, resend func(error) bool) error {
	if s.follow == nil {
		err := send(ctx)
		s.nudgeCluster(err)
		return err
	}
	op := opOf(ctx)
	var last error // why the previous attempt was not enough
	for {
		if err := s.follow.hold(ctx); err != nil {
			if last == nil {
				s.held.failing(op, time.Now())
			}
			s.held.gaveUp(op)
			return err
		}
		began := time.Now()
		actx, cancel := context.WithTimeout(ctx, s.timeout)
		err := send(actx)
		cancel()
		if err == nil {
			s.held.succeeded(s, began, op, last != nil)
			return nil
		}
		s.follow.suspect(err)
		if last != nil && ctxErr(ctx) != nil {
			s.held.gaveUp(op)
			return fmt.Errorf("%w (retried until: %v)", last, err)
		}
		if !resend(err) || ctxErr(ctx) != nil {
			if last != nil {
				s.held.gaveUp(op)
			}
			return err
		}
		s.held.failing(op, began)
		if !s.follow.retry(ctx) {
			s.held.gaveUp(op)
			return err
		}
		s.held.retried(op)
		last = err
	}
}

// tryAgainWait is how long a command refused with TRYAGAIN waits before it
// is sent again. A Cluster node answers TRYAGAIN to a command on several
// keys of a slot being moved to another node when the keys are not all on
// one of the two: the command did not run, so it is safe to send again
// (go-redis does not, for the store's commands it must not resend after a
// lost reply, such as Commit). It goes through once the keys are together
// or the move has ended, within the call's timeout.
const tryAgainWait = 20 * time.Millisecond

// sleepWithin waits d unless ctx would end first (then it reports false at
// once).
func sleepWithin(ctx context.Context, d time.Duration) bool {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// nudgeCluster makes a Cluster client reload its slot map after a failure
// that shows a node may be gone: a refused dial, a broken connection, a
// timeout, CLUSTERDOWN or TRYAGAIN. go-redis reloads it by itself on MOVED
// and READONLY, and otherwise only every ClusterStateReloadInterval (60 s
// by default): when a master dies and the cluster promotes its replica,
// nobody answers MOVED, and the commands for the dead master's slots went
// on dialling it for up to a minute after the promotion
// (TestClusterFollowsFailover). go-redis runs one reload at a time, and
// one more at most every 200 ms however many failures ask for it.
func (s *Store) nudgeCluster(err error) {
	if err == nil || errors.Is(err, goredis.Nil) {
		return
	}
	c, ok := s.cli().(*goredis.ClusterClient)
	if !ok {
		return
	}
	if neverRan(err) || connLost(err) || isTimeout(err) || errors.Is(err, context.DeadlineExceeded) ||
		goredis.HasErrorPrefix(err, "CLUSTERDOWN") || goredis.HasErrorPrefix(err, "TRYAGAIN") {
		c.ReloadState(context.Background())
	}
}

// PutBatch implements store.Store: the valid writes go in one pipeline.
func (s *Store) PutBatch(ctx context.Context, writes []store.Write) []error {
	const op = "put-batch"
	errs := make([]error, len(writes))
	if len(writes) == 0 {
		return errs
	}
	cctx, cancel, err := s.call(ctx, op)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	defer cancel()
	var valid []int
	for i, w := range writes {
		if errs[i] = checkWrite(w.Key, w.Value, w.TTL); errs[i] == nil {
			valid = append(valid, i)
		}
	}
	s.pipeWrites(ctx, cctx, op, writes, valid, errs)
	return errs
}

// pipeWrites sends writes[i] for each i of which, in one pipeline, and
// sets errs[i] to each one's result.
func (s *Store) pipeWrites(ctx, cctx context.Context, op string, writes []store.Write, which []int, errs []error) {
	if len(which) == 0 {
		return
	}
	cmds := make([]*goredis.StatusCmd, len(which)) // the plain SETs
	sent := make([]goredis.Cmder, len(which))
	for j, i := range which {
		w := writes[i]
		if w.IfAbsent {
			sent[j] = s.putIfAbsentCmd(cctx, w.Key, w.Value, w.TTL)
		} else {
			cmds[j] = goredis.NewStatusCmd(cctx, s.setCmd(w.Key, w.Value, w.TTL)...)
			sent[j] = cmds[j]
		}
	}
	s.pipeline(cctx, sent) // each command carries its own error
	for j, i := range which {
		switch err := sent[j].Err(); {
		case err == nil && writes[i].IfAbsent && !s.created(sent[j]):
			errs[i] = store.ErrExists
		case err == nil:
			errs[i] = nil
		case writes[i].IfAbsent && errors.Is(err, goredis.Nil):
			errs[i] = store.ErrExists
		default:
			errs[i] = s.fail(ctx, cctx, op, err)
		}
	}
}

// Ping implements store.Store, as a health check that does real work: it
// writes a short-lived random key and deletes it, so that a server that
// answers PING but cannot write (a read-only replica after a failover, a
// full server) is reported. It says so within the timeout: a readiness
// check does not wait out a failover (the failover budget is not spent).
func (s *Store) Ping(ctx context.Context) error {
	return s.ping(ctx, "ping", s.timeout)
}

func (s *Store) ping(ctx context.Context, op string, timeout time.Duration) error {
	cctx, cancel, err := s.callWithin(ctx, op, timeout)
	if err != nil {
		return err
	}
	defer cancel()
	key := s.prefix + "health:" + rand.Text()
	cmds := []goredis.Cmder{
		goredis.NewStatusCmd(cctx, "set", key, "1", "px", int64(10_000)),
		goredis.NewIntCmd(cctx, "del", key),
	}
	if err := s.pipeline(cctx, cmds); err != nil {
		return s.fail(ctx, cctx, op, err)
	}
	return nil
}

// Close implements store.Store: it closes the client. Calls after it fail
// with ErrClosed; Close itself is idempotent.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.subs.closeAll()
	if s.follow != nil {
		s.follow.close()
	}
	if err := s.cli().Close(); err != nil && !errors.Is(err, goredis.ErrClosed) {
		return fmt.Errorf("redis: close: %w", err)
	}
	return nil
}
