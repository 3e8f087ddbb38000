package main

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

// Lines of scenarios that run at once come out in matrix order, whatever
// order they were written and finished in; the first scenario's lines
// are written through as they come.
func TestLanesKeepMatrixOrder(t *testing.T) {
	var out bytes.Buffer
	l := newLanes(&out, 4)
	w := func(i int, s string) { fmt.Fprintln(l.lane(i), s) }
	w(2, "c running")
	w(0, "a running")
	if out.String() != "a running\n" {
		t.Fatalf("the head scenario's line is not written through: %q", out.String())
	}
	w(1, "b running")
	w(2, "c done")
	l.done(2)
	w(1, "b done")
	l.done(1)
	w(3, "d skipped")
	l.done(3)
	if got := out.String(); got != "a running\n" {
		t.Fatalf("later scenarios printed before the first was done: %q", got)
	}
	w(0, "a done")
	l.done(0)
	want := "a running\na done\nb running\nb done\nc running\nc done\nd skipped\n"
	if got := out.String(); got != want {
		t.Errorf("printed %q, want %q", got, want)
	}
}

// A scenario marked to run alone takes every slot; a take that the
// context ends gives back what it had taken.
func TestSlots(t *testing.T) {
	s := newSlots(3)
	ctx := context.Background()
	if !s.take(ctx, 1) || !s.take(ctx, 1) {
		t.Fatal("two of three slots not taken")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if s.take(cctx, 3) {
		t.Fatal("all three slots taken while two were held")
	}
	if len(s) != 2 {
		t.Fatalf("%d slots held after a cancelled take, want 2", len(s))
	}
	s.give(2)
	if !s.take(ctx, 3) || len(s) != 3 {
		t.Fatalf("all three slots not taken once free: %d held", len(s))
	}
}
