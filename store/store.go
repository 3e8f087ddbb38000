// Package store is the contract between samlha's SAML service provider and
// the places its login state can live: process memory, Redis, or anything
// else that passes the conformance suite in store/storetest.
//
// The contract knows nothing of HTTP or SAML. It stores opaque byte values
// under string keys, each with a time to live, and offers the few atomic
// operations that login state needs:
//
//   - PutIfAbsent, for replay records: exactly one writer wins.
//   - Swap, replace-and-return: exactly one caller gets the original value;
//     the others get what it was replaced with (a tombstone, for example),
//     so a tracked login is consumed once and "already used" can be told
//     apart from "never existed".
//
// Optional interfaces add what a backend can do better than the plain
// methods, each with a package helper that falls back to them:
//
//   - Committer (CommitTo): the ACS's guarded swap and the writes that
//     follow it, in one atomic step (one Redis round trip).
//   - MultiGetter (GetMany): several keys in one round trip.
//   - Notifier: an invalidation channel whose subscriptions say, within a
//     bound, when they may have missed a message (no fallback).
//
// Errors are classified with sentinels that callers test with errors.Is:
// ErrNotFound, ErrExists and ErrConflict describe the data; ErrUnavailable describes the
// store (connection refused, timeout, closed) and is never confused with
// ErrNotFound. ErrFull is a store that refuses new state rather than evict
// live state. Backends register themselves by URL scheme (see Register and
// Open), as database/sql drivers do.
package store

import (
	"context"
	"time"
)

// Store holds byte values under string keys, each until its TTL runs out.
//
// Keys are non-empty strings of at most MaxKeyLen bytes; any byte may appear
// in them. Values may be empty, and at least MaxValueLen bytes long. A TTL
// must be positive; backends round it up to their resolution (Redis: one
// millisecond). A value whose TTL has run out is gone: no operation returns
// it, and PutIfAbsent and Swap treat its key as absent.
//
// Every method is safe for concurrent use. Every method fails with an error
// matching ErrUnavailable once Close has been called, and with an error
// matching the context's error when ctx is done before the operation is
// performed.
type Store interface {
	// Put stores value under key for ttl, replacing any value and TTL.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error

	// PutIfAbsent stores value under key for ttl only if key holds no
	// live value. Otherwise it changes nothing and returns an error
	// matching ErrExists. Of many concurrent calls for one absent key,
	// exactly one succeeds.
	PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) error

	// Get returns the value under key, or an error matching ErrNotFound.
	// The caller owns the returned slice.
	Get(ctx context.Context, key string) ([]byte, error)

	// Swap replaces the live value under key with value for ttl and
	// returns the value it replaced, atomically. If key holds no live
	// value, Swap writes nothing and returns an error matching
	// ErrNotFound. Of many concurrent calls for one key, exactly one
	// gets the original value; each of the others gets the value written
	// by the call before it.
	Swap(ctx context.Context, key string, value []byte, ttl time.Duration) ([]byte, error)

	// Delete removes key. Deleting an absent key is not an error.
	Delete(ctx context.Context, key string) error

	// PutBatch performs writes in order and reports one result per write
	// (nil, or an error as Put or PutIfAbsent would return it), sending
	// them in one round trip where the backend can. The batch is not
	// atomic: each write succeeds or fails on its own. If the store
	// cannot be reached every result matches ErrUnavailable.
	PutBatch(ctx context.Context, writes []Write) []error

	// Ping checks that the store can serve requests now, doing a real
	// round trip where there is one.
	Ping(ctx context.Context) error

	// Close releases the store's resources. Calls after Close fail with
	// ErrUnavailable (ErrClosed). Close is idempotent.
	Close() error
}

// Write is one write of a PutBatch.
type Write struct {
	Key   string
	Value []byte
	TTL   time.Duration
	// IfAbsent gives the write PutIfAbsent's semantics.
	IfAbsent bool
}

// Limits every backend accepts.
const (
	// MaxKeyLen is the longest key, in bytes.
	MaxKeyLen = 1024
	// MaxValueLen is the largest value, in bytes, every backend must accept.
	MaxValueLen = 1 << 20
)

// Describer is implemented by stores that can describe themselves for logs
// and the status page: the kind of backend, its address with any password
// removed, and whether other processes see the same data.
type Describer interface {
	// Kind is "memory", "redis", "redis-sentinel", "redis-cluster", ...
	Kind() string
	// Location is the redacted URL the store was opened from.
	Location() string
	// Shared reports whether the data is shared between processes that
	// open the same URL, so that a login begun on one replica can be
	// finished on another (Redis: true; process memory: false).
	Shared() bool
}

// Shared reports whether s says its data is shared between processes (see
// Describer). A store that does not describe itself is taken as shared:
// the SP then makes no claim that a login was lost for being begun
// elsewhere.
func Shared(s Store) bool {
	d, ok := s.(Describer)
	return !ok || d.Shared()
}

// FailoverWaiter is implemented by a store that rides out a failover of
// its server: while the server is gone (a master killed, a replica being
// promoted) an operation waits and retries for up to FailoverBudget beyond
// the store's per-call timeout, instead of failing at once; past it, it
// fails with ErrUnavailable. A caller that bounds each store call with a
// context deadline should allow that much more, or the budget is never
// spent (the SP adds it to --store-timeout). Redis behind Sentinels
// (redis-sentinel://, URL parameter failover_budget) implements it.
type FailoverWaiter interface {
	// FailoverBudget is how much longer than its timeout a call may take
	// during a failover; 0 if the store does not wait.
	FailoverBudget() time.Duration
	// Retries returns how many times each operation (put, put-if-absent,
	// get, swap, delete, put-batch, commit, get-many, publish, ping) was
	// sent again since the store was opened.
	Retries() map[string]uint64
}

// FailoverBudget returns s's failover budget (see FailoverWaiter), 0 if it
// has none.
func FailoverBudget(s Store) time.Duration {
	if w, ok := s.(FailoverWaiter); ok {
		return w.FailoverBudget()
	}
	return 0
}
