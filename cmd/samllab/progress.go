package main

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/samlha/samlha/cmd/samllab/internal/load"
	"github.com/samlha/samlha/cmd/samllab/internal/results"
)

// progress shows a live bar per scenario on a terminal (mpb), and a plain
// line per scenario elsewhere (CI logs, pipes).
type progress struct {
	w    io.Writer
	p    *mpb.Progress // nil: plain lines
	col  int
	prio int // the bar's place on the terminal (mpb.BarPriority)
}

func newProgress(w io.Writer, mode string) *progress {
	on := mode == "on"
	if mode == "auto" {
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			on = true
		}
	}
	pr := &progress{w: w, col: 26}
	if on {
		pr.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40))
	}
	return pr
}

// lane is pr for the scenario i of the matrix: its plain lines go to w,
// its bar on the terminal goes in its place in the matrix, whenever it
// starts.
func (pr *progress) lane(i int, w io.Writer) *progress {
	c := *pr
	c.w, c.prio = w, i
	return &c
}

type bar struct {
	pr       *progress
	name     string
	b        *mpb.Bar
	ok, fail atomic.Int64
}

// Add starts a bar for a scenario of total logins.
func (pr *progress) Add(name string, total int) *bar {
	b := &bar{pr: pr, name: name}
	if pr.p != nil {
		b.b = pr.p.AddBar(int64(total), mpb.BarPriority(pr.prio),
			mpb.PrependDecorators(decor.Name(fmt.Sprintf("%-*s", pr.col, name))),
			mpb.AppendDecorators(
				decor.CountersNoUnit("%d/%d"),
				decor.Any(func(decor.Statistics) string {
					return fmt.Sprintf("  ok %d  failed %d", b.ok.Load(), b.fail.Load())
				}),
				decor.OnComplete(decor.Name(""), "  done"),
			))
	} else {
		fmt.Fprintf(pr.w, "%-*s running %d logins ...\n", pr.col, name, total)
	}
	return b
}

// Skip reports a scenario that did not run.
func (pr *progress) Skip(name, reason string) {
	if pr.p != nil {
		pr.p.AddBar(1, mpb.BarPriority(pr.prio), mpb.PrependDecorators(decor.Name(fmt.Sprintf("%-*s skipped: %s", pr.col, name, reason)))).SetTotal(1, true)
		return
	}
	fmt.Fprintf(pr.w, "%-*s skipped: %s\n", pr.col, name, reason)
}

// Fail reports a scenario that could not run and must have.
func (pr *progress) Fail(name, reason string) {
	if pr.p != nil {
		pr.p.AddBar(1, mpb.BarPriority(pr.prio), mpb.PrependDecorators(decor.Name(fmt.Sprintf("%-*s FAILED: %s", pr.col, name, reason)))).SetTotal(1, true)
		return
	}
	fmt.Fprintf(pr.w, "%-*s FAILED: %s\n", pr.col, name, reason)
}

// Done counts one finished login.
func (b *bar) Done(r *load.Record) {
	if r.Login.OK {
		b.ok.Add(1)
	} else {
		b.fail.Add(1)
	}
	if b.b != nil {
		b.b.Increment()
	}
}

// Finish completes the bar (logins not tried, if any, included).
func (b *bar) Finish(l results.Logins) {
	if b.b != nil {
		b.b.SetTotal(-1, true)
		return
	}
	fmt.Fprintf(b.pr.w, "%-*s done: %d/%d logins succeeded\n", b.pr.col, b.name, l.Succeeded, l.Tried)
}

// Abort drops the bar of a scenario that could not start.
func (b *bar) Abort() {
	if b.b != nil {
		b.b.Abort(false)
	}
}

// Wait waits for the bars to render their last state.
func (pr *progress) Wait() {
	if pr.p != nil {
		pr.p.Wait()
	}
}
