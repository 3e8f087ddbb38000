package session

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"

	"github.com/samlha/samlha/store"
)

// ReplayCache is crewjam's saml.AssertionReplayCache over a store: an
// assertion ID is recorded with put-if-absent until the assertion expires,
// so an assertion is accepted once across every replica that shares the
// store. crewjam also records LogoutRequest IDs and artifacts in it.
type ReplayCache struct {
	store   store.Store
	timeout time.Duration
	now     func() time.Time
	onErr   func(op string, err error)
}

var _ saml.AssertionReplayCache = (*ReplayCache)(nil)

// NewReplayCache is the replay cache over st; onErr is told of store
// failures.
func NewReplayCache(st store.Store, timeout time.Duration, now func() time.Time, onErr func(op string, err error)) *ReplayCache {
	return &ReplayCache{store: st, timeout: timeout, now: now, onErr: onErr}
}

// Consume implements saml.AssertionReplayCache.
func (c *ReplayCache) Consume(assertionID string, expiresAt time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	err := c.store.PutIfAbsent(ctx, ReplayKey(assertionID), []byte{1}, ReplayTTL(expiresAt, c.now()))
	switch {
	case errors.Is(err, store.ErrExists):
		return saml.ErrAssertionReplayed
	case err != nil:
		c.onErr("put-if-absent", err)
	}
	return err
}

// replayKey is the key of the replay record of an assertion (or logout
// request, or artifact) ID: a hash, so the key's length is bounded whatever
// the IdP sends and the store holds no identifier of the IdP's.
func ReplayKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return keyReplay + base64.RawURLEncoding.EncodeToString(sum[:])
}

// replayTTL keeps a replay record until the assertion expires, and at least
// a second, so that clock rounding never records it for nothing.
func ReplayTTL(expiresAt, now time.Time) time.Duration {
	return max(expiresAt.Sub(now), time.Second)
}

// Revocations is crewjam's samlsp.SessionRevocationStore over a store.
type Revocations struct {
	store   store.Store
	timeout time.Duration
	now     func() time.Time
}

var _ samlsp.SessionRevocationStore = (*Revocations)(nil)

// Revoke implements samlsp.SessionRevocationStore. Two concurrent revokes of
// one key can race (read, then write); both record "now", so the loser's
// time differs from the winner's by the length of the race, never more.
func (v *Revocations) Revoke(ctx context.Context, key string, revokedAt, expiresAt time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	if prev, err := v.RevokedAt(ctx, key); err != nil {
		return err
	} else if prev.After(revokedAt) {
		revokedAt = prev
	}
	b := []byte(revokedAt.UTC().Format(time.RFC3339Nano))
	return v.store.Put(ctx, keyRevoked+key, b, ReplayTTL(expiresAt, v.now()))
}

// RevokedAt implements samlsp.SessionRevocationStore.
func (v *Revocations) RevokedAt(ctx context.Context, key string) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	b, err := v.store.Get(ctx, keyRevoked+key)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return time.Parse(time.RFC3339Nano, string(b))
}
