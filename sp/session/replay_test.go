package session

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/crewjam/saml"
	"github.com/jonboulle/clockwork"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/memory"
)

func TestReplayCache(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	st := memory.New(memory.Options{Now: clock.Now, JanitorInterval: -1})
	t.Cleanup(func() { st.Close() })
	var storeErrs int
	c := &ReplayCache{store: st, timeout: time.Second, now: clock.Now, onErr: func(string, error) { storeErrs++ }}

	exp := clock.Now().Add(5 * time.Minute)
	if err := c.Consume("id-a", exp); err != nil {
		t.Fatalf("first Consume: %v", err)
	}
	if err := c.Consume("id-a", exp); !errors.Is(err, saml.ErrAssertionReplayed) {
		t.Fatalf("second Consume: %v, want saml.ErrAssertionReplayed", err)
	}
	if err := c.Consume("id-b", exp); err != nil {
		t.Fatalf("other ID: %v", err)
	}
	clock.Advance(6 * time.Minute)
	if err := c.Consume("id-a", clock.Now().Add(time.Minute)); err != nil {
		t.Fatalf("after the assertion expired the record may go: %v", err)
	}
	st.Close()
	err := c.Consume("id-c", exp)
	if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, saml.ErrAssertionReplayed) {
		t.Fatalf("closed store: %v, want ErrUnavailable and not a replay", err)
	}
	if storeErrs != 1 {
		t.Errorf("store errors reported %d times, want 1", storeErrs)
	}
}

func TestRevocationsKeepLaterTime(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	st := memory.New(memory.Options{Now: clock.Now, JanitorInterval: -1})
	t.Cleanup(func() { st.Close() })
	v := &Revocations{store: st, timeout: time.Second, now: clock.Now}
	ctx := context.Background()
	if at, err := v.RevokedAt(ctx, "k"); err != nil || !at.IsZero() {
		t.Fatalf("unrevoked key: %v %v", at, err)
	}
	t1 := clock.Now()
	t0 := t1.Add(-time.Minute)
	if err := v.Revoke(ctx, "k", t1, t1.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := v.Revoke(ctx, "k", t0, t1.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if at, err := v.RevokedAt(ctx, "k"); err != nil || !at.Equal(t1) {
		t.Fatalf("RevokedAt = %v, %v; want the later time %v", at, err, t1)
	}
	clock.Advance(2 * time.Hour)
	if at, err := v.RevokedAt(ctx, "k"); err != nil || !at.IsZero() {
		t.Fatalf("record should expire with the sessions it covers: %v %v", at, err)
	}
}
