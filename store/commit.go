package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
)

// Commit is a guarded swap and the writes that follow it only if it
// happened: what the SP's ACS does once it has checked a SAML response
// (consume the tracked login, record the assertion as used, store the
// session), in one atomic step where the backend can.
type Commit struct {
	// Key is the record to swap (the tracked login).
	Key string
	// Value replaces Key's live value (a tombstone), for TTL.
	Value []byte
	TTL   time.Duration
	// IfPrefix guards the swap: the live value must begin with these
	// bytes, or nothing at all is written. Empty: no guard.
	IfPrefix []byte
	// Then are written, in order, only if the swap happened. Each
	// succeeds or fails on its own, as in PutBatch: an IfAbsent write
	// whose key holds a live value fails with ErrExists and writes
	// nothing, and the others are still written.
	Then []Write
}

// Committer is implemented by stores that perform a Commit in one atomic
// step. Use CommitTo, which falls back to Get, Swap and PutBatch for a
// store without it.
type Committer interface {
	// Commit performs c atomically: no other operation sees the swap
	// without the Then writes, or observes Key between the guard's check
	// and the swap. It returns:
	//
	//   - the replaced value, one result per Then write (nil, ErrExists
	//     for a lost IfAbsent, ErrFull, or, where the writes cannot all
	//     be made in the swap's step, any error PutBatch may return), and
	//     nil: the swap happened;
	//   - nil, nil and an error matching ErrNotFound: Key holds no live
	//     value; nothing was written;
	//   - the live value, nil and an error matching ErrConflict: it does
	//     not begin with IfPrefix; nothing was written;
	//   - nil, nil and an error matching ErrInvalid: Key, Value, TTL or
	//     one of the Then writes breaks the contract; nothing was written;
	//   - nil, nil and any other error of Swap (unavailable, the caller's
	//     context, closed): the commit may or may not have happened.
	//
	// Of many concurrent commits of one Key whose guard matches only the
	// original value (as a tombstone does not), exactly one succeeds; the
	// others get ErrConflict and write nothing. The slices returned
	// belong to the caller.
	Commit(ctx context.Context, c Commit) (old []byte, then []error, err error)
}

// CommitTo performs c on s: with s's own Commit if s is a Committer,
// otherwise with a Get, a Swap and a PutBatch (three round trips). The
// fallback keeps Commit's results and its exactly-one-winner guarantee
// (the Swap is atomic), but it is not one atomic step: if Key's live value
// changes between the Get and the Swap to one that fails the guard, the
// Swap has already replaced it when ErrConflict is returned with it, and
// the Then writes follow the swap as a separate batch.
func CommitTo(ctx context.Context, s Store, c Commit) (old []byte, then []error, err error) {
	if cs, ok := s.(Committer); ok {
		return cs.Commit(ctx, c)
	}
	if err := c.Check(); err != nil {
		return nil, nil, err
	}
	if len(c.IfPrefix) > 0 {
		live, err := s.Get(ctx, c.Key)
		if err != nil {
			return nil, nil, err
		}
		if !bytes.HasPrefix(live, c.IfPrefix) {
			return live, nil, conflict()
		}
	}
	old, err = s.Swap(ctx, c.Key, c.Value, c.TTL)
	if err != nil {
		return nil, nil, err
	}
	if !bytes.HasPrefix(old, c.IfPrefix) {
		return old, nil, conflict()
	}
	return old, s.PutBatch(ctx, c.Then), nil
}

func conflict() error {
	return fmt.Errorf("%w: the live value does not begin with the guard's prefix", ErrConflict)
}

// Check returns an error matching ErrInvalid if c's swap or any of its
// Then writes breaks the contract (the size of values is left to the
// backend). A Committer checks this before it writes anything.
func (c Commit) Check() error {
	if err := CheckKey(c.Key); err != nil {
		return err
	}
	if err := CheckTTL(c.TTL); err != nil {
		return err
	}
	for i, w := range c.Then {
		if err := CheckKey(w.Key); err != nil {
			return fmt.Errorf("then[%d]: %w", i, err)
		}
		if err := CheckTTL(w.TTL); err != nil {
			return fmt.Errorf("then[%d]: %w", i, err)
		}
	}
	return nil
}

// MultiGetter is implemented by stores that read several keys in one round
// trip. Use GetMany, which falls back to one Get per key.
type MultiGetter interface {
	// GetMany returns the values of keys, in order: nil for a key that
	// holds no live value, a non-nil slice (empty for an empty value)
	// for one that does. It fails as a whole (unavailable, the caller's
	// context, closed, ErrInvalid for a key that breaks the contract):
	// it never reports a key absent that it could not read. The keys
	// are read one by one, not as one snapshot. No keys: no round trip.
	GetMany(ctx context.Context, keys []string) ([][]byte, error)
}

// GetMany reads keys from s: with s's own GetMany if s is a MultiGetter,
// otherwise with one Get per key, in order.
func GetMany(ctx context.Context, s Store, keys []string) ([][]byte, error) {
	if mg, ok := s.(MultiGetter); ok {
		return mg.GetMany(ctx, keys)
	}
	for _, k := range keys {
		if err := CheckKey(k); err != nil {
			return nil, err
		}
	}
	vals := make([][]byte, len(keys))
	for i, k := range keys {
		v, err := s.Get(ctx, k)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return nil, err
		case v == nil:
			vals[i] = []byte{}
		default:
			vals[i] = v
		}
	}
	return vals, nil
}
