// Package memory is the in-process backend of store.Store.
//
// State lives in this process only: a login begun on one replica cannot be
// finished on another (store.Shared reports false for kind "memory"). It is
// the backend of a single replica, of replicas behind a sticky balancer, and
// of tests.
//
// Entries are spread over shards by a hash of the key, each shard with its
// own lock, so unrelated keys do not contend. An entry whose TTL has run out
// is gone for every operation at once (lazy expiry on access), and a janitor
// goroutine sweeps such entries out of memory in the background until Close.
//
// The store holds at most MaxEntries entries. When it is full, a write of a
// new key first drops expired entries and, if that frees nothing, fails with
// an error matching store.ErrFull: live login state is never evicted to make
// room. Replacing, taking and deleting existing keys still work.
//
// Open it with store.Open and a URL of the form
//
//	memory://?max_entries=1000000&shards=64&janitor=30s
//
// where every parameter is optional and the values shown are the defaults
// (janitor=0 turns the janitor off; expired entries are then dropped only on
// access or when the store is full).
package memory

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/bits"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/samlha/samlha/store"
)

// Defaults for the zero Options and for a URL that leaves a parameter out.
const (
	DefaultMaxEntries      = 1_000_000
	DefaultShards          = 64
	DefaultJanitorInterval = 30 * time.Second
)

// Options configure a Store. The zero value is usable: every zero field
// takes its default.
type Options struct {
	// MaxEntries caps the number of entries held, expired ones not yet
	// swept included. Default DefaultMaxEntries.
	MaxEntries int
	// Shards is the number of independently locked shards, rounded up to
	// a power of two. Default DefaultShards.
	Shards int
	// JanitorInterval is how often the janitor sweeps expired entries.
	// Zero means DefaultJanitorInterval; a negative value turns the
	// janitor off.
	JanitorInterval time.Duration
	// MaxValueLen is the largest value accepted, in bytes. Default
	// store.MaxValueLen.
	MaxValueLen int
	// Now is the clock that decides expiry. Default time.Now. The janitor's
	// ticker runs on real time whatever the clock.
	Now func() time.Time
	// Logger receives the janitor's reports. Default: discard.
	Logger *slog.Logger
}

// Store is an in-process store.Store. Create it with New or store.Open.
type Store struct {
	shards     []shard
	mask       uint64
	seed       maphash.Seed
	maxEntries int64
	maxValue   int
	now        func() time.Time
	logger     *slog.Logger
	location   string

	count  atomic.Int64 // entries held in all shards
	closed atomic.Bool
	notify notifier

	closeOnce   sync.Once
	stopJanitor chan struct{}
	janitorDone chan struct{}
}

var (
	_ store.Store       = (*Store)(nil)
	_ store.Describer   = (*Store)(nil)
	_ store.Committer   = (*Store)(nil)
	_ store.MultiGetter = (*Store)(nil)
	_ store.Exporter    = (*Store)(nil)
)

// shard is one independently locked part of the store. The padding keeps
// two shards' locks off one cache line.
type shard struct {
	mu sync.Mutex
	m  map[string]entry // nil once the store is closed
	// minExp is a lower bound of the expiry times in m (UnixNano), or
	// math.MaxInt64 when m is empty: a sweep is pointless while it lies in
	// the future. It is written under mu and read without it.
	minExp atomic.Int64
	_      [40]byte
}

// entry is one value. The value is a string so that the store's copy is
// immutable and one word smaller than a slice.
type entry struct {
	val string
	exp int64 // UnixNano at which the entry is gone
}

const never = int64(^uint64(0) >> 1)

func init() {
	store.Register("memory", open, "memory")
}

// New returns a store configured by opts, with its janitor running unless
// turned off. Close stops the janitor.
func New(opts Options) *Store {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.Shards <= 0 {
		opts.Shards = DefaultShards
	}
	n := 1 << bits.Len(uint(opts.Shards-1)) // round up to a power of two
	if opts.JanitorInterval == 0 {
		opts.JanitorInterval = DefaultJanitorInterval
	}
	if opts.MaxValueLen <= 0 {
		opts.MaxValueLen = store.MaxValueLen
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		shards:     make([]shard, n),
		mask:       uint64(n - 1),
		seed:       maphash.MakeSeed(),
		maxEntries: int64(opts.MaxEntries),
		maxValue:   opts.MaxValueLen,
		now:        opts.Now,
		logger:     opts.Logger,
		location:   location(opts, n),
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]entry)
		s.shards[i].minExp.Store(never)
	}
	if opts.JanitorInterval > 0 {
		s.stopJanitor = make(chan struct{})
		s.janitorDone = make(chan struct{})
		go s.janitor(opts.JanitorInterval)
	}
	return s
}

func location(opts Options, shards int) string {
	janitor := "0"
	if opts.JanitorInterval > 0 {
		janitor = opts.JanitorInterval.String()
	}
	return fmt.Sprintf("memory://?max_entries=%d&shards=%d&janitor=%s", opts.MaxEntries, shards, janitor)
}

// open is the store.Opener for the memory scheme.
func open(_ context.Context, u *url.URL, logger *slog.Logger) (store.Store, error) {
	opts, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	opts.Logger = logger
	return New(opts), nil
}

// ParseURL reads Options from a memory:// URL. Unknown parameters are an
// error, so that a misspelt one is not silently ignored.
func ParseURL(u *url.URL) (Options, error) {
	var opts Options
	if u.Scheme != "memory" {
		return opts, fmt.Errorf("memory: scheme %q is not memory", u.Scheme)
	}
	if u.Host != "" || (u.Path != "" && u.Path != "/") || u.User != nil {
		return opts, fmt.Errorf("memory: URL takes no host, user or path, only query parameters (memory://?max_entries=N)")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return opts, fmt.Errorf("memory: query: %w", err)
	}
	for k, v := range q {
		val := v[len(v)-1]
		switch k {
		case "max_entries":
			if opts.MaxEntries, err = positive(k, val); err != nil {
				return opts, err
			}
		case "shards":
			if opts.Shards, err = positive(k, val); err != nil {
				return opts, err
			}
			if opts.Shards > 1<<16 {
				return opts, fmt.Errorf("memory: shards=%d is more than %d", opts.Shards, 1<<16)
			}
		case "janitor":
			d, err := time.ParseDuration(val)
			if err != nil || d < 0 {
				return opts, fmt.Errorf("memory: janitor=%q is not a duration of zero or more, such as 30s", val)
			}
			opts.JanitorInterval = d
			if d == 0 {
				opts.JanitorInterval = -1
			}
		default:
			return opts, fmt.Errorf("memory: unknown parameter %q (known: max_entries, shards, janitor)", k)
		}
	}
	return opts, nil
}

func positive(name, val string) (int, error) {
	n, err := strconv.Atoi(val)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("memory: %s=%q is not a positive integer", name, val)
	}
	return n, nil
}

// Kind implements store.Describer.
func (s *Store) Kind() string { return "memory" }

// Shared implements store.Describer: the data lives in this process only.
func (s *Store) Shared() bool { return false }

// Location implements store.Describer: the URL of the effective options.
func (s *Store) Location() string { return s.location }

// Len returns the number of entries held, expired ones not yet swept
// included.
func (s *Store) Len() int { return int(s.count.Load()) }

func (s *Store) shardOf(key string) *shard {
	return &s.shards[s.shardIndex(key)]
}

func (s *Store) shardIndex(key string) uint64 {
	return maphash.String(s.seed, key) & s.mask
}

// begin checks what every operation checks first: the store is open and
// the context is not done.
func (s *Store) begin(ctx context.Context, op string) error {
	if s.closed.Load() {
		return fmt.Errorf("memory: %s: %w", op, store.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	return nil
}

func closedErr(op string) error { return fmt.Errorf("memory: %s: %w", op, store.ErrClosed) }

func (s *Store) checkWrite(key string, value []byte, ttl time.Duration) error {
	if err := store.CheckKey(key); err != nil {
		return err
	}
	if err := store.CheckTTL(ttl); err != nil {
		return err
	}
	return store.CheckValue(value, s.maxValue)
}

// expiry returns the UnixNano at which an entry written now for ttl is
// gone, saturating instead of overflowing.
func expiry(now int64, ttl time.Duration) int64 {
	if exp := now + int64(ttl); exp > now {
		return exp
	}
	return never
}

// pack copies key and value into one allocation and returns the two
// parts: one allocation per entry instead of two, and the map never keeps
// a caller's string (or the larger string it may be part of) alive.
// Assigning to a present key replaces the map's copy of the key too, so
// the old allocation is freed whole.
func pack(key string, value []byte) (k, v string) {
	var b strings.Builder
	b.Grow(len(key) + len(value))
	b.WriteString(key)
	b.Write(value)
	kv := b.String()
	return kv[:len(key)], kv[len(key):]
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return s.put(ctx, "put", key, value, ttl, false)
}

// PutIfAbsent implements store.Store.
func (s *Store) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return s.put(ctx, "put-if-absent", key, value, ttl, true)
}

func (s *Store) put(ctx context.Context, op, key string, value []byte, ttl time.Duration, ifAbsent bool) error {
	if err := s.begin(ctx, op); err != nil {
		return err
	}
	if err := s.checkWrite(key, value, ttl); err != nil {
		return err
	}
	return s.fullIfNoRoom(s.write(op, key, value, ttl, ifAbsent))
}

func (s *Store) fullIfNoRoom(err error) error {
	if err == errNoRoom {
		return s.fullErr()
	}
	return err
}

// write stores value under key, or with ifAbsent only where key holds no
// live value. A new key needs room: when the store is full it sweeps
// expired entries, first in key's shard, then, having let go of that
// shard's lock, in every shard, and tries once more.
func (s *Store) write(op, key string, value []byte, ttl time.Duration, ifAbsent bool) error {
	sh := s.shardOf(key)
	for attempt := 0; ; attempt++ {
		sh.mu.Lock()
		if sh.m == nil {
			sh.mu.Unlock()
			return closedErr(op)
		}
		err := s.putLocked(sh, key, value, ttl, ifAbsent, s.now().UnixNano())
		sh.mu.Unlock()
		if err == errNoRoom && attempt == 0 && s.sweepAll() > 0 {
			continue
		}
		return err
	}
}

// errNoRoom is putLocked's report of a full store, before the sweep of
// every shard that write tries; it is returned as a full error.
var errNoRoom = errors.New("no room")

// putLocked stores value under key in sh, whose lock the caller holds: or,
// with ifAbsent, returns ErrExists if key holds a live value; or
// errNoRoom if key is new and the store is full even after a sweep of sh.
func (s *Store) putLocked(sh *shard, key string, value []byte, ttl time.Duration, ifAbsent bool, now int64) error {
	// An expired entry counts as absent; its slot is reused.
	old, present := sh.m[key]
	if ifAbsent && present && old.exp > now {
		return store.ErrExists
	}
	if !present && !s.reserve(sh, now) {
		return errNoRoom
	}
	s.setLocked(sh, key, value, ttl, now)
	return nil
}

// setLocked stores value under key in sh, whose lock the caller holds,
// over an entry already counted.
func (s *Store) setLocked(sh *shard, key string, value []byte, ttl time.Duration, now int64) {
	exp := expiry(now, ttl)
	k, v := pack(key, value)
	sh.m[k] = entry{val: v, exp: exp}
	if exp < sh.minExp.Load() {
		sh.minExp.Store(exp)
	}
}

func (s *Store) fullErr() error {
	return fmt.Errorf("%w: the memory store holds its limit of %d entries (max_entries)", store.ErrFull, s.maxEntries)
}

// reserve counts one more entry if there is room, sweeping sh (whose lock
// the caller holds) if that makes room.
func (s *Store) reserve(sh *shard, now int64) bool {
	if s.tryReserve() {
		return true
	}
	if sh.minExp.Load() > now || s.sweepLocked(sh, now) == 0 {
		return false
	}
	return s.tryReserve()
}

// tryReserve counts one more entry if that keeps the count within
// maxEntries. The count never passes it, not even for a moment.
func (s *Store) tryReserve() bool {
	for {
		n := s.count.Load()
		if n >= s.maxEntries {
			return false
		}
		if s.count.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	return s.read(ctx, "get", key)
}

func (s *Store) read(ctx context.Context, op, key string) ([]byte, error) {
	if err := s.begin(ctx, op); err != nil {
		return nil, err
	}
	if err := store.CheckKey(key); err != nil {
		return nil, err
	}
	sh := s.shardOf(key)
	sh.mu.Lock()
	if sh.m == nil {
		sh.mu.Unlock()
		return nil, closedErr(op)
	}
	e, ok := s.live(sh, key, s.now().UnixNano())
	sh.mu.Unlock()
	if !ok {
		return nil, store.ErrNotFound
	}
	return []byte(e.val), nil
}

// live returns key's entry if it has not expired, deleting it if it has.
// The caller holds sh.mu.
func (s *Store) live(sh *shard, key string, now int64) (entry, bool) {
	e, ok := sh.m[key]
	if !ok {
		return entry{}, false
	}
	if e.exp <= now {
		delete(sh.m, key)
		s.count.Add(-1)
		return entry{}, false
	}
	return e, true
}

// Swap implements store.Store.
func (s *Store) Swap(ctx context.Context, key string, value []byte, ttl time.Duration) ([]byte, error) {
	if err := s.begin(ctx, "swap"); err != nil {
		return nil, err
	}
	if err := s.checkWrite(key, value, ttl); err != nil {
		return nil, err
	}
	sh := s.shardOf(key)
	sh.mu.Lock()
	if sh.m == nil {
		sh.mu.Unlock()
		return nil, closedErr("swap")
	}
	now := s.now().UnixNano()
	old, ok := s.live(sh, key, now)
	if !ok {
		sh.mu.Unlock()
		return nil, store.ErrNotFound
	}
	s.setLocked(sh, key, value, ttl, now)
	sh.mu.Unlock()
	return []byte(old.val), nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.begin(ctx, "delete"); err != nil {
		return err
	}
	if err := store.CheckKey(key); err != nil {
		return err
	}
	sh := s.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		return closedErr("delete")
	}
	if _, ok := sh.m[key]; ok {
		delete(sh.m, key)
		s.count.Add(-1)
	}
	return nil
}

// PutBatch implements store.Store. Each write takes its shard's lock on its
// own; there is no round trip to save.
func (s *Store) PutBatch(ctx context.Context, writes []store.Write) []error {
	errs := make([]error, len(writes))
	if err := s.begin(ctx, "put-batch"); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	for i, w := range writes {
		if err := s.checkWrite(w.Key, w.Value, w.TTL); err != nil {
			errs[i] = err
			continue
		}
		errs[i] = s.fullIfNoRoom(s.write("put-batch", w.Key, w.Value, w.TTL, w.IfAbsent))
	}
	return errs
}

// Ping implements store.Store: an open memory store can always serve.
func (s *Store) Ping(ctx context.Context) error {
	return s.begin(ctx, "ping")
}

// Close implements store.Store: it stops the janitor and drops every entry.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.notify.close()
		if s.stopJanitor != nil {
			close(s.stopJanitor)
			<-s.janitorDone
		}
		for i := range s.shards {
			sh := &s.shards[i]
			sh.mu.Lock()
			s.count.Add(-int64(len(sh.m)))
			sh.m = nil
			sh.mu.Unlock()
		}
	})
	return nil
}

// sweepLocked deletes sh's expired entries and returns how many it deleted.
// The caller holds sh.mu.
func (s *Store) sweepLocked(sh *shard, now int64) int {
	n := 0
	minExp := never
	for k, e := range sh.m {
		if e.exp <= now {
			delete(sh.m, k)
			n++
		} else if e.exp < minExp {
			minExp = e.exp
		}
	}
	sh.minExp.Store(minExp)
	s.count.Add(-int64(n))
	return n
}

// sweepAll sweeps every shard that may hold an expired entry, one lock at a
// time, and returns how many entries it deleted.
func (s *Store) sweepAll() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		now := s.now().UnixNano()
		if sh.minExp.Load() > now {
			continue
		}
		sh.mu.Lock()
		if sh.m != nil {
			n += s.sweepLocked(sh, now)
		}
		sh.mu.Unlock()
	}
	return n
}

func (s *Store) janitor(every time.Duration) {
	defer close(s.janitorDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stopJanitor:
			return
		case <-t.C:
			if n := s.sweepAll(); n > 0 {
				s.logger.Debug("memory store: swept expired entries", "swept", n, "held", s.count.Load())
			}
		}
	}
}

// Commit implements store.Committer: the shards of every key involved are
// locked together (in index order, so commits never deadlock), and the
// guard, the swap and the Then writes happen under those locks.
func (s *Store) Commit(ctx context.Context, c store.Commit) ([]byte, []error, error) {
	const op = "commit"
	if err := s.begin(ctx, op); err != nil {
		return nil, nil, err
	}
	if err := s.checkCommit(c); err != nil {
		return nil, nil, err
	}
	// Room for the Then writes is made before the locks are taken: the
	// sweep of every shard must not run under them.
	if s.count.Load()+int64(len(c.Then)) > s.maxEntries {
		s.sweepAll()
	}
	locked := s.lockShards(c)
	defer unlockShards(locked)
	for _, sh := range locked {
		if sh.m == nil {
			return nil, nil, closedErr(op)
		}
	}
	sh := s.shardOf(c.Key)
	now := s.now().UnixNano()
	old, ok := s.live(sh, c.Key, now)
	if !ok {
		return nil, nil, store.ErrNotFound
	}
	if !strings.HasPrefix(old.val, string(c.IfPrefix)) {
		return []byte(old.val), nil, fmt.Errorf("%w: the live value does not begin with the guard's prefix", store.ErrConflict)
	}
	s.setLocked(sh, c.Key, c.Value, c.TTL, now)
	errs := make([]error, len(c.Then))
	for i, w := range c.Then {
		errs[i] = s.fullIfNoRoom(s.putLocked(s.shardOf(w.Key), w.Key, w.Value, w.TTL, w.IfAbsent, now))
	}
	return []byte(old.val), errs, nil
}

func (s *Store) checkCommit(c store.Commit) error {
	if err := c.Check(); err != nil {
		return err
	}
	if err := store.CheckValue(c.Value, s.maxValue); err != nil {
		return err
	}
	for i, w := range c.Then {
		if err := store.CheckValue(w.Value, s.maxValue); err != nil {
			return fmt.Errorf("then[%d]: %w", i, err)
		}
	}
	return nil
}

// lockShards locks the shards of c's keys, each once, in index order, and
// returns them.
func (s *Store) lockShards(c store.Commit) []*shard {
	idx := []uint64{s.shardIndex(c.Key)}
	for _, w := range c.Then {
		idx = append(idx, s.shardIndex(w.Key))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	locked := make([]*shard, len(idx))
	for i, n := range idx {
		locked[i] = &s.shards[n]
		locked[i].mu.Lock()
	}
	return locked
}

func unlockShards(locked []*shard) {
	for _, sh := range locked {
		sh.mu.Unlock()
	}
}

// GetMany implements store.MultiGetter: one Get per key, each under its
// shard's lock.
func (s *Store) GetMany(ctx context.Context, keys []string) ([][]byte, error) {
	const op = "get-many"
	if err := s.begin(ctx, op); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if err := store.CheckKey(k); err != nil {
			return nil, err
		}
	}
	vals := make([][]byte, len(keys))
	for i, k := range keys {
		v, err := s.read(ctx, op, k)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			vals[i] = v
		}
	}
	return vals, nil
}

// Export implements store.Exporter: shard by shard, the live entries of
// each shard are copied out under its lock and handed to fn, batch at a
// time, with the lock released.
func (s *Store) Export(ctx context.Context, batch int, fn func([]store.Write) error) error {
	if batch < 1 {
		batch = 1
	}
	buf := make([]store.Write, 0, batch)
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		out := buf
		buf = make([]store.Write, 0, batch)
		return fn(out)
	}
	for i := range s.shards {
		if err := s.begin(ctx, "export"); err != nil {
			return err
		}
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.m == nil {
			sh.mu.Unlock()
			return closedErr("export")
		}
		now := s.now().UnixNano()
		var part []store.Write
		for k, e := range sh.m {
			if e.exp <= now {
				continue
			}
			part = append(part, store.Write{Key: strings.Clone(k), Value: []byte(e.val), TTL: time.Duration(e.exp - now)})
		}
		sh.mu.Unlock()
		for _, w := range part {
			buf = append(buf, w)
			if len(buf) == batch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}
