package memory_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/memory"
)

func TestExportListsLiveEntriesWithTheirTimeLeft(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := memory.New(memory.Options{Now: clk.Now, JanitorInterval: -1, Shards: 4})
	defer s.Close()
	ctx := context.Background()
	for i := range 10 {
		if err := s.Put(ctx, fmt.Sprintf("k%d", i), []byte(fmt.Sprintf("v%d", i)), time.Duration(i+1)*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(90 * time.Second) // k0 (1m) has expired, k1 (2m) has 30s left
	var got []store.Write
	calls := 0
	err := s.Export(ctx, 3, func(ws []store.Write) error {
		calls++
		if len(ws) == 0 || len(ws) > 3 {
			t.Errorf("a batch of %d entries, want 1 to 3", len(ws))
		}
		got = append(got, ws...)
		return nil
	})
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].TTL < got[j].TTL })
	if len(got) != 9 || calls != 3 {
		t.Fatalf("exported %d entries in %d calls, want the 9 live ones in 3: %+v", len(got), calls, got)
	}
	for i, w := range got {
		n := i + 1
		want := store.Write{Key: fmt.Sprintf("k%d", n), Value: []byte(fmt.Sprintf("v%d", n)), TTL: time.Duration(n+1)*time.Minute - 90*time.Second}
		if w.Key != want.Key || string(w.Value) != string(want.Value) || w.TTL != want.TTL || w.IfAbsent {
			t.Errorf("entry %d: %+v, want %+v", i, w, want)
		}
	}
	// The exported values are copies: changing them changes nothing stored.
	got[0].Value[0] = 'X'
	if v, _ := s.Get(ctx, got[0].Key); string(v) != "v1" {
		t.Errorf("the store's value changed with the exported copy: %q", v)
	}
}

func TestExportStops(t *testing.T) {
	t.Parallel()
	s := memory.New(memory.Options{JanitorInterval: -1})
	ctx := context.Background()
	for i := range 5 {
		_ = s.Put(ctx, fmt.Sprintf("k%d", i), []byte("v"), time.Minute)
	}
	boom := errors.New("boom")
	calls := 0
	if err := s.Export(ctx, 1, func([]store.Write) error { calls++; return boom }); !errors.Is(err, boom) || calls != 1 {
		t.Errorf("Export with a failing fn: %v after %d calls, want boom after 1", err, calls)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Export(cctx, 10, func([]store.Write) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Export with a cancelled context: %v", err)
	}
	s.Close()
	if err := s.Export(ctx, 10, func([]store.Write) error { return nil }); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Export after Close: %v, want unavailable", err)
	}
}
