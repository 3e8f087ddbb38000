// Package handoff is the store of a replica that is moving from its own
// memory to a shared store (Redis) while it serves: the way from affinity
// to shared state, and back, without losing a login or a session.
//
// A Store has a local part (the memory backend, which can export its
// entries) and a shared part. Until Handoff it is the local store with a
// read-through:
//
//   - reads (Get, GetMany) look in memory first and, for what memory does
//     not hold, in the shared store;
//   - Swap and Commit work on the key where it lives: in memory if memory
//     holds it, otherwise in the shared store (so a login begun on a
//     replica that has handed off can be finished here, and a session it
//     made can be used and refreshed here);
//   - new keys (Put, PutIfAbsent, PutBatch) go to memory, as on any memory
//     replica; Delete deletes in both.
//
// Handoff, called on SIGTERM before the replica stops accepting requests,
// copies every live entry of memory into the shared store (replacing what
// is there: where memory holds a key it holds the newest value, because a
// key found in memory is never written in the shared store), with the time
// each has left, and from then on every operation goes to the shared store
// only. Operations wait while the copy runs, so none is lost between the
// copy and the switch.
//
// Replay records of assertions are per replica until Handoff, as they are
// on any memory replica; misses are named as on a memory replica (the
// store does not claim to be shared).
package handoff

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/samlha/samlha/store"
)

// Batch is how many entries one write to the shared store carries during
// Handoff (one pipelined round trip to Redis).
const Batch = 512

// Local is what the local part must be: a store that can list its entries
// (store/memory).
type Local interface {
	store.Store
	store.Exporter
}

// Store is a local store reading through to a shared one until Handoff,
// and the shared store after it. Create it with New.
type Store struct {
	local  Local
	shared store.Store

	// mu is held for reading by every operation before Handoff, and for
	// writing by Handoff while it copies: no operation runs between the
	// copy and the switch.
	mu  sync.RWMutex
	off atomic.Bool // handed off: everything goes to shared
}

var (
	_ store.Store       = (*Store)(nil)
	_ store.Committer   = (*Store)(nil)
	_ store.MultiGetter = (*Store)(nil)
	_ store.Describer   = (*Store)(nil)
)

// New returns a Store over local and shared. It owns both: Close closes
// them.
func New(local Local, shared store.Store) (*Store, error) {
	if local == nil || shared == nil {
		return nil, errors.New("handoff: needs a local and a shared store")
	}
	if !store.Shared(shared) {
		return nil, errors.New("handoff: the store to hand off to is not shared between processes (a memory:// URL?)")
	}
	return &Store{local: local, shared: shared}, nil
}

// HandedOff reports whether Handoff has completed.
func (s *Store) HandedOff() bool { return s.off.Load() }

// route reports whether the operation works on the local store with the
// read-through (before Handoff), holding the read lock until done is
// called; otherwise the operation goes to the shared store only.
func (s *Store) route() (local bool, done func()) {
	if s.off.Load() {
		return false, func() {}
	}
	s.mu.RLock()
	if s.off.Load() {
		s.mu.RUnlock()
		return false, func() {}
	}
	return true, s.mu.RUnlock
}

// Handoff copies every live entry of the local store into the shared one
// and switches every later operation to the shared store. It returns how
// many entries it copied. If a write fails, nothing is switched: the
// replica keeps its memory (and the error says how many were copied); a
// second call copies again. After a successful Handoff it does nothing.
func (s *Store) Handoff(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.off.Load() {
		return 0, nil
	}
	n := 0
	err := s.local.Export(ctx, Batch, func(ws []store.Write) error {
		for i, err := range s.shared.PutBatch(ctx, ws) {
			if err != nil {
				return fmt.Errorf("key %d of a batch: %w", i, err)
			}
		}
		n += len(ws)
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("handoff: %d entries copied, then: %w", n, err)
	}
	s.off.Store(true)
	return n, nil
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	local, done := s.route()
	defer done()
	if !local {
		return s.shared.Put(ctx, key, value, ttl)
	}
	return s.local.Put(ctx, key, value, ttl)
}

// PutIfAbsent implements store.Store.
func (s *Store) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	local, done := s.route()
	defer done()
	if !local {
		return s.shared.PutIfAbsent(ctx, key, value, ttl)
	}
	return s.local.PutIfAbsent(ctx, key, value, ttl)
}

// PutBatch implements store.Store.
func (s *Store) PutBatch(ctx context.Context, writes []store.Write) []error {
	local, done := s.route()
	defer done()
	if !local {
		return s.shared.PutBatch(ctx, writes)
	}
	return s.local.PutBatch(ctx, writes)
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	local, done := s.route()
	defer done()
	if !local {
		return s.shared.Get(ctx, key)
	}
	v, err := s.local.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return s.shared.Get(ctx, key)
	}
	return v, err
}

// GetMany implements store.MultiGetter: what memory does not hold is read
// from the shared store in one more round trip.
func (s *Store) GetMany(ctx context.Context, keys []string) ([][]byte, error) {
	local, done := s.route()
	defer done()
	if !local {
		return store.GetMany(ctx, s.shared, keys)
	}
	vals, err := store.GetMany(ctx, s.local, keys)
	if err != nil {
		return nil, err
	}
	var missing []string
	var at []int
	for i, v := range vals {
		if v == nil {
			missing = append(missing, keys[i])
			at = append(at, i)
		}
	}
	if len(missing) == 0 {
		return vals, nil
	}
	more, err := store.GetMany(ctx, s.shared, missing)
	if err != nil {
		return nil, err
	}
	for j, i := range at {
		vals[i] = more[j]
	}
	return vals, nil
}

// Swap implements store.Store: on the key where it lives.
func (s *Store) Swap(ctx context.Context, key string, value []byte, ttl time.Duration) ([]byte, error) {
	local, done := s.route()
	defer done()
	if !local {
		return s.shared.Swap(ctx, key, value, ttl)
	}
	old, err := s.local.Swap(ctx, key, value, ttl)
	if errors.Is(err, store.ErrNotFound) {
		return s.shared.Swap(ctx, key, value, ttl)
	}
	return old, err
}

// Commit implements store.Committer: in the store that holds c.Key, its
// Then writes with it, atomically as that store commits.
func (s *Store) Commit(ctx context.Context, c store.Commit) ([]byte, []error, error) {
	local, done := s.route()
	defer done()
	if !local {
		return store.CommitTo(ctx, s.shared, c)
	}
	old, then, err := store.CommitTo(ctx, s.local, c)
	if errors.Is(err, store.ErrNotFound) {
		return store.CommitTo(ctx, s.shared, c)
	}
	return old, then, err
}

// Delete implements store.Store: in both stores, before Handoff.
func (s *Store) Delete(ctx context.Context, key string) error {
	local, done := s.route()
	defer done()
	if !local {
		return s.shared.Delete(ctx, key)
	}
	if err := s.local.Delete(ctx, key); err != nil {
		return err
	}
	return s.shared.Delete(ctx, key)
}

// Ping implements store.Store: before Handoff both must answer (a miss
// reads through to the shared store).
func (s *Store) Ping(ctx context.Context) error {
	local, done := s.route()
	defer done()
	if local {
		if err := s.local.Ping(ctx); err != nil {
			return err
		}
	}
	return s.shared.Ping(ctx)
}

// Close implements store.Store: it closes both stores.
func (s *Store) Close() error {
	return errors.Join(s.local.Close(), s.shared.Close())
}

// Kind implements store.Describer: the local store's kind, since logins and
// sessions made here live in this process until Handoff.
func (s *Store) Kind() string { return kindOf(s.local) }

// Shared implements store.Describer: false, as for the local store (a miss
// is named as on a memory replica).
func (s *Store) Shared() bool { return false }

// Location implements store.Describer.
func (s *Store) Location() string {
	return locationOf(s.local) + " (handoff to " + locationOf(s.shared) + ")"
}

func kindOf(st store.Store) string {
	if d, ok := st.(store.Describer); ok {
		return d.Kind()
	}
	return "unknown"
}

func locationOf(st store.Store) string {
	if d, ok := st.(store.Describer); ok {
		return d.Location()
	}
	return "?"
}
