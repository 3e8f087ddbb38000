package main

import (
	"bytes"
	"context"
	"io"
	"runtime"
	"sync"
)

// maxParallel bounds --parallel: each scenario runs half a dozen processes
// and up to --concurrency browsers.
const maxParallel = 8

// defaultParallel is --parallel's default: one scenario more than the
// machine has CPUs, at most four. The scenarios mostly wait (think time at
// the IdP, paced users, restarts), so on 2 CPUs three at once keep them
// busy without starving any; the scenarios that measure a timing window
// run alone anyway, after the others (scenario.Scenario.Alone).
func defaultParallel() int {
	return min(runtime.NumCPU()+1, 4)
}

// slots are the places for scenarios running at once. One goroutine takes
// them, scenario after scenario, so a scenario that needs every slot
// (Alone) is not overtaken by later ones: it waits for the running ones to
// finish, and the ones after it wait for it.
type slots chan struct{}

func newSlots(n int) slots { return make(slots, n) }

// take takes n slots, or none if ctx ends first (it then reports false).
func (s slots) take(ctx context.Context, n int) bool {
	for i := range n {
		select {
		case s <- struct{}{}:
		case <-ctx.Done():
			s.give(i)
			return false
		}
	}
	return true
}

// give returns n slots.
func (s slots) give(n int) {
	for range n {
		<-s
	}
}

// lanes print the lines of scenarios running at once in matrix order: the
// earliest scenario not done yet writes through as it goes; each later one
// is held until every one before it is done, then printed whole. The
// output is the same, line for line, whatever ran beside what.
type lanes struct {
	mu   sync.Mutex
	w    io.Writer
	head int // the scenario writing through
	held []bytes.Buffer
	fin  []bool
}

func newLanes(w io.Writer, n int) *lanes {
	return &lanes{w: w, held: make([]bytes.Buffer, n), fin: make([]bool, n)}
}

// lane is scenario i's writer.
func (l *lanes) lane(i int) io.Writer { return laneWriter{l, i} }

type laneWriter struct {
	l *lanes
	i int
}

func (lw laneWriter) Write(p []byte) (int, error) {
	l := lw.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if lw.i == l.head {
		return l.w.Write(p)
	}
	return l.held[lw.i].Write(p)
}

// done marks scenario i finished: if it was writing through, the next
// ones' held lines follow, up to the first one still running.
func (l *lanes) done(i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fin[i] = true
	for l.head < len(l.fin) && l.fin[l.head] {
		l.head++
		if l.head < len(l.held) {
			_, _ = l.held[l.head].WriteTo(l.w)
		}
	}
}
