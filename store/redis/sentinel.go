package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// How a Sentinel store follows its master.
const (
	// sentinelPoll is how often the store asks a Sentinel for the master's
	// address, besides listening for +switch-master: the fallback for a
	// message lost with a Sentinel connection.
	sentinelPoll = time.Second
	// sentinelKickEvery is how often at most a failing command makes the
	// store ask at once.
	sentinelKickEvery = 50 * time.Millisecond
	// holdMax bounds how long commands are held after a Sentinel began to
	// promote a replica, if neither the switch nor an abort is heard.
	holdMax = 3 * time.Second
	// retryWait bounds the wait before a command that never ran (a dial
	// refused by a dead master, READONLY from a demoted one) is sent again,
	// to the master the store follows by then, within the call's timeout and failover budget.
	retryWait = 50 * time.Millisecond
)

// errNoMaster: no Sentinel has named the master yet.
var errNoMaster = errors.New("no Sentinel has named the master yet")

// follower follows the master that the Sentinels name, and replaces the
// store's client whole whenever that changes.
//
// Why not go-redis's FailoverClient: it learns a new master from
// +switch-master or at its next dial, and closes the connections to the
// old one, but its connection pool keeps the dial circuit breaker tripped
// by the dials the dead master refused; the breaker lets a dial through
// only when its background probe, once a second, succeeds. So each replica
// resumes writing anywhere from 0 to more than a second after the
// promotion, each at its own phase ("replicas do not recover together").
// A new client for each master starts with no broken connections and no
// tripped breaker, and its dialer goes to the address the Sentinel named.
type follower struct {
	s         *Store
	name      string
	sentinels []string
	sentinel  func(addr string) *goredis.Options
	newClient func(master string) goredis.UniversalClient

	mu      sync.Mutex
	master  string        // "" until a Sentinel names it
	changed chan struct{} // closed and replaced when master changes
	clients map[string]*goredis.SentinelClient
	next    int // the Sentinel to ask first
	retired []goredis.UniversalClient
	closed  bool // no client replaces the store's any more
	// holdUntil, by Sentinel: that Sentinel is promoting a replica; until
	// the switch, its abort or end of the failover, or this time, no
	// command goes to the old master. Kept per Sentinel because the one
	// that loses an election announces its abort while the winner goes on.
	holdUntil map[string]time.Time

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup

	// via, if set, maps the master's address to the one dialled instead
	// (tests put a proxy there).
	via atomic.Pointer[func(addr string) string]
}

// newFollower returns the follower of the master name that the Sentinels at
// addrs watch; client are the options of the data clients (their Addr is
// replaced by the master's). start starts it.
func newFollower(s *Store, client goredis.UniversalOptions) *follower {
	f := &follower{
		s:         s,
		name:      client.MasterName,
		sentinels: client.Addrs,
		changed:   make(chan struct{}),
		clients:   map[string]*goredis.SentinelClient{},
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
	}
	f.sentinel = func(addr string) *goredis.Options {
		return &goredis.Options{
			Addr: addr, Username: client.SentinelUsername, Password: client.SentinelPassword,
			TLSConfig: client.TLSConfig, DialTimeout: client.DialTimeout,
			ReadTimeout: s.timeout, WriteTimeout: s.timeout, PoolTimeout: s.timeout,
			DialerRetries: client.DialerRetries, DialerRetryTimeout: client.DialerRetryTimeout,
			ContextTimeoutEnabled: true, DisableIdentity: true, PoolSize: 2,
			MaxRetries:               -1, // the follower asks again, and the next Sentinel
			MaintNotificationsConfig: client.MaintNotificationsConfig,
		}
	}
	opts := client.Simple()
	// The store retries itself (see Store.retrying): to the master the
	// store follows by then, within the failover budget, and only what is
	// safe to send again. go-redis's own retries would spend an attempt's
	// timeout redialling a dead master and report the deadline rather than
	// why.
	opts.MaxRetries = -1
	dial := goredis.NewDialer(opts)
	// Every data client dials the master named last: a command retried
	// after a switch reaches the new master even on the client it began on.
	opts.Dialer = func(ctx context.Context, network, _ string) (net.Conn, error) {
		addr := f.current()
		if addr == "" {
			var err error
			if addr, err = f.ask(ctx); err != nil {
				return nil, &net.OpError{Op: "dial", Net: network, Err: err}
			}
		}
		if via := f.via.Load(); via != nil {
			addr = (*via)(addr)
		}
		return dial(ctx, network, addr)
	}
	f.newClient = func(master string) goredis.UniversalClient {
		o := *opts
		o.Addr = master
		if o.Addr == "" {
			o.Addr = f.name // a label for go-redis's pool; the dialer asks
		}
		return goredis.NewClient(&o)
	}
	return f
}

func (f *follower) start() {
	for _, addr := range f.sentinels {
		f.wg.Go(func() { f.listen(addr) })
	}
	f.wg.Go(f.poll)
}

// current returns the master's address, or "" if none is known.
func (f *follower) current() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.master
}

// follow makes addr the master: a new client for it replaces the store's.
func (f *follower) follow(addr string) {
	f.mu.Lock()
	if addr == f.master || addr == "" || f.closed {
		f.mu.Unlock()
		return
	}
	old := f.master
	f.master = addr
	s := f.s
	s.hooks.mu.Lock()
	c := f.newClient(addr)
	s.addHooksTo(c)
	prev := s.client.Swap(&clientRef{c})
	s.hooks.mu.Unlock()
	clear(f.holdUntil)
	close(f.changed)
	f.changed = make(chan struct{})
	f.retired = append(f.retired, prev.UniversalClient)
	f.mu.Unlock()
	// Calls in flight on the old client finish or fail within the
	// store's timeout; then it goes. Subscriptions move at once.
	time.AfterFunc(s.timeout+100*time.Millisecond, func() { prev.Close() })
	s.subs.resetAll()
	s.logger.Info("redis-sentinel: following the master the Sentinels name", "master", f.name, "addr", addr, "was", old)
}

// sentinelClient returns the client of the Sentinel at addr.
func (f *follower) sentinelClient(addr string) *goredis.SentinelClient {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.clients[addr]
	if !ok {
		c = goredis.NewSentinelClient(f.sentinel(addr))
		f.clients[addr] = c
	}
	return c
}

// ask asks the Sentinels, the last one that answered first, for the
// master's address, and follows it.
func (f *follower) ask(ctx context.Context) (string, error) {
	f.mu.Lock()
	first := f.next
	f.mu.Unlock()
	var errs []error
	for i := range f.sentinels {
		n := (first + i) % len(f.sentinels)
		addr := f.sentinels[n]
		cctx, cancel := context.WithTimeout(ctx, f.s.timeout)
		r, err := f.sentinelClient(addr).GetMasterAddrByName(cctx, f.name).Result()
		cancel()
		if err == nil && len(r) != 2 {
			err = fmt.Errorf("unexpected reply %q", r)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("Sentinel %s: %w", addr, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		f.mu.Lock()
		f.next = n
		f.mu.Unlock()
		master := net.JoinHostPort(r[0], r[1])
		f.follow(master)
		return master, nil
	}
	return "", fmt.Errorf("%w: %w", errNoMaster, errors.Join(errs...))
}

// poll asks the Sentinels every sentinelPoll, and at once (at most every
// sentinelKickEvery) when a command failed as if the master had gone.
func (f *follower) poll() {
	t := time.NewTicker(sentinelPoll)
	defer t.Stop()
	ctx := background(context.Background())
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		case <-f.kick:
		}
		_, _ = f.ask(ctx)
		select {
		case <-f.stop:
			return
		case <-time.After(sentinelKickEvery):
		}
	}
}

// suspect reports a command's failure: unless it is Redis's answer about
// the data, the master may have moved, and the Sentinels are asked now.
func (f *follower) suspect(err error) {
	if err == nil || errors.Is(err, goredis.Nil) {
		return
	}
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// listen follows the failover events of the Sentinel at addr, and
// subscribes again when its connection fails: after sentinelKickEvery, then
// waiting twice as long each time up to sentinelPoll while it keeps
// failing. The store listens to every Sentinel it was given, not one: a
// planned failover (SENTINEL FAILOVER) is announced step by step only by
// the Sentinel that runs it, and one that wins an election is not always
// the one a store would have picked; a store that heard only another
// Sentinel learned of the promotion from the winner's +switch-master,
// gossiped a second later, and in that second the old master acknowledged
// writes it then discarded (hundreds per store in
// TestSentinelFollowsFailoverWithinASecond/failover-elsewhere).
func (f *follower) listen(addr string) {
	ctx := background(context.Background())
	wait := sentinelKickEvery
	for {
		ps := f.sentinelClient(addr).Subscribe(ctx, failoverEvents...)
		done := make(chan struct{})
		go func() {
			select {
			case <-f.stop:
				ps.Close()
			case <-done:
			}
		}()
		for {
			msg, err := ps.ReceiveTimeout(ctx, 2*sentinelPoll)
			if err != nil {
				if isTimeout(err) {
					continue // idle: the poll checks the Sentinels
				}
				break
			}
			switch m := msg.(type) {
			case *goredis.Message:
				f.event(addr, m.Channel, m.Payload)
			case *goredis.Subscription:
				wait = sentinelKickEvery // connected again
			}
		}
		close(done)
		ps.Close()
		select {
		case <-f.stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, sentinelPoll)
	}
}

// failoverEvents are the Sentinel events the follower listens to.
var failoverEvents = []string{
	"+switch-master",
	"+try-failover", "+elected-leader", "+failover-state-select-slave", "+failover-state-send-slaveof-noone",
	"+failover-end", "+failover-end-for-timeout",
	"-failover-abort-not-elected", "-failover-abort-no-good-slave", "-failover-abort-slave-timeout",
}

// event acts on an event about the followed master from the Sentinel at
// sentinel.
//
// A planned failover (SENTINEL FAILOVER, or one whose old master is still
// up) promotes the replica while the old master, which does not know it
// yet, goes on acknowledging writes until the Sentinel reconfigures it,
// a second or so later: writes it then discards. So from the moment a
// Sentinel starts the failover (+try-failover) until +switch-master, an
// abort, or holdMax, commands are held (they wait, within their timeout,
// and fail as unavailable rather than be lost), and subscriptions start
// again (Lost now; Live on the new master).
//
// Why +try-failover and not +failover-state-send-slaveof-noone, the step
// right before the promotion: the Sentinel sends REPLICAOF NO ONE one
// timer tick (50-100 ms) after publishing that, and a store whose process
// waited longer than a tick for the CPU (a loaded machine) heard it after
// the promotion and lost the writes in between (34 in one test run at a
// load average of 15). +try-failover comes two ticks earlier; the later
// steps hold too, for a store that connected to the Sentinel midway.
//
// With several Sentinels each holds on its own account: the hold lasts
// while any of them is promoting, so that the abort of one that lost an
// election does not end the hold of the one that won.
func (f *follower) event(sentinel, channel, payload string) {
	p := strings.Fields(payload)
	switch {
	case channel == "+switch-master":
		// "<name> <old ip> <old port> <new ip> <new port>"
		if len(p) == 5 && p[0] == f.name {
			f.follow(net.JoinHostPort(p[3], p[4]))
		}
	case eventMaster(p) != f.name:
	case holdFrom[channel]:
		f.mu.Lock()
		if until, ok := f.holdUntil[sentinel]; ok && time.Now().Before(until) {
			f.mu.Unlock()
			return // already held since an earlier step of this failover
		}
		if f.holdUntil == nil {
			f.holdUntil = map[string]time.Time{}
		}
		f.holdUntil[sentinel] = time.Now().Add(holdMax)
		f.mu.Unlock()
		f.s.subs.resetAll()
		f.s.logger.Info("redis-sentinel: a failover has begun; holding commands until the switch", "master", f.name,
			"sentinel", sentinel, "event", channel, "for_at_most", holdMax)
	default: // this Sentinel's failover ended or was aborted
		f.mu.Lock()
		_, held := f.holdUntil[sentinel]
		delete(f.holdUntil, sentinel)
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
		if held {
			f.s.logger.Info("redis-sentinel: failover over; commands go on", "master", f.name, "sentinel", sentinel, "event", channel)
		}
	}
}

// heldUntil is when the latest hold ends (zero: none); f.mu is held.
func (f *follower) heldUntil() time.Time {
	var last time.Time
	for _, until := range f.holdUntil {
		if until.After(last) {
			last = until
		}
	}
	return last
}

// holdFrom are the events of a failover's steps before the promotion.
var holdFrom = map[string]bool{
	"+try-failover": true, "+elected-leader": true,
	"+failover-state-select-slave": true, "+failover-state-send-slaveof-noone": true,
}

// eventMaster returns the master an event's payload is about: "master
// <name> <ip> <port>", or "<type> <name> <ip> <port> @ <master> <ip> <port>".
func eventMaster(p []string) string {
	for i, f := range p {
		if f == "@" && i+1 < len(p) {
			return p[i+1]
		}
	}
	if len(p) >= 2 && p[0] == "master" {
		return p[1]
	}
	return ""
}

// errFailingOver: a command held while a replica is promoted could not be
// sent before its context ended.
var errFailingOver = errors.New("a Sentinel is promoting a replica; the command was held and not sent")

// hold waits while a replica is being promoted, until the switch (or an
// abort, or holdMax) or ctx's end, which it reports as errFailingOver.
func (f *follower) hold(ctx context.Context) error {
	for {
		f.mu.Lock()
		until, changed := f.heldUntil(), f.changed
		f.mu.Unlock()
		left := time.Until(until)
		if until.IsZero() || left <= 0 {
			return nil
		}
		t := time.NewTimer(left)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return errFailingOver
		case <-f.stop:
			t.Stop()
			return errFailingOver
		}
		t.Stop()
	}
}

// retry waits before a command that never ran is sent again: until the
// follower follows a new master or retryWait passes. It says no if ctx
// would end first.
func (f *follower) retry(ctx context.Context) bool {
	if d, ok := ctx.Deadline(); ok && time.Until(d) < retryWait {
		return false
	}
	f.mu.Lock()
	changed := f.changed
	f.mu.Unlock()
	t := time.NewTimer(retryWait)
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	case <-ctx.Done():
		return false
	case <-f.stop:
		return false
	}
	return true
}

// neverRan reports whether err shows that the server did not run the
// command: the connection was never made (a refused dial, go-redis's dial
// breaker, no master named yet), no connection was free, the client had
// been replaced and closed, or the server refused it before running it
// (READONLY from a demoted master, NOREPLICAS from one that lost its
// replicas under min-replicas-to-write, LOADING, MASTERDOWN). A command
// whose reply was lost is not among them.
func neverRan(err error) bool {
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return true
	case errors.Is(err, goredis.ErrPoolTimeout), errors.Is(err, goredis.ErrClosed), errors.Is(err, errNoMaster):
		return true
	}
	for _, prefix := range []string{"READONLY", "NOREPLICAS", "LOADING", "MASTERDOWN"} {
		if goredis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}

// close stops the follower and closes its Sentinel clients and the data
// clients it retired.
func (f *follower) close() {
	close(f.stop)
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, c := range f.clients {
		c.Close()
	}
	for _, c := range f.retired {
		c.Close()
	}
}
