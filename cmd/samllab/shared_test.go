package main

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/samlha/samlha/cmd/samllab/internal/results"
)

// The scenarios each test of the matrix checks, all run with the same
// flags (sharedRunFlags).
var sharedRunScenarios = map[string][]string{
	"TestScenarioOutcomes": {"roundrobin-memory", "sticky-lax-cookie", "roundrobin-redis-outage", "sticky-memory-kill"},
	"TestGatewayScenarios": {"gateway-roundrobin-redis", "gateway-roundrobin-redis-rolling", "gateway-forward-auth"},
	"TestDeployDayScenarios": {"roundrobin-redis-failover", "roundrobin-redis-aof-restart", "roundrobin-redis-rolling",
		"roundrobin-redis-scaleout", "sticky-slow-user"},
}

var sharedRunFlags = []string{"--logins", "30", "--concurrency", "4", "--follow-ups", "2"}

// sharedRun is one samllab run of the scenarios of every selected test of
// sharedRunScenarios, begun by TestMain in the background: one run, its
// scenarios side by side (samllab run's default --parallel; those marked
// to run alone alone), instead of three runs one after another, each
// holding one of go test's -parallel slots while it waits. Each test reads
// its own scenarios from it. With -count above 1, every count reads the
// same run.
var sharedRun labShared

type labShared struct {
	once    sync.Once
	done    chan struct{}
	tests   []string // the tests whose scenarios it runs
	r       *results.Run
	printed string
	err     error
}

// begin starts the run of the scenarios of tests, in a run directory under
// dir; once only.
func (l *labShared) begin(dir string, tests []string) {
	l.once.Do(func() {
		l.done, l.tests = make(chan struct{}), tests
		var names []string
		for _, t := range tests {
			for _, n := range sharedRunScenarios[t] {
				// gateway-forward-auth needs nginx: without it
				// TestGatewayScenarios skips (or, under CI, fails) on
				// its own.
				if n != "gateway-forward-auth" || testBins.Nginx != "" {
					names = append(names, n)
				}
			}
		}
		go func() {
			defer close(l.done)
			l.r, l.printed, l.err = runLabIn(filepath.Join(dir, "shared-run"), append([]string{"--scenarios", strings.Join(names, ",")}, sharedRunFlags...)...)
		}()
	})
}

// get waits for the run and returns test's scenarios (in matrix order) and
// everything the run printed.
func (l *labShared) get(t *testing.T, test string) (*results.Run, string) {
	t.Helper()
	if l.done == nil {
		t.Fatalf("TestMain did not begin the shared run for %s (is sharedRunTests's -run match wrong?)", test)
	}
	<-l.done
	if l.err != nil {
		t.Fatal(l.err)
	}
	if !strings.Contains(","+strings.Join(l.tests, ",")+",", ","+test+",") {
		t.Fatalf("the shared run was begun for %v, not %s", l.tests, test)
	}
	r := *l.r
	r.Scenarios = nil
	for _, s := range l.r.Scenarios {
		name, _, _ := strings.Cut(s.Name, "/")
		for _, n := range sharedRunScenarios[test] {
			if n == name {
				r.Scenarios = append(r.Scenarios, s)
			}
		}
	}
	return &r, l.printed
}

// wait waits for the run, if it was begun, so that no child of it outlives
// the tests (whether or not a test read it).
func (l *labShared) wait() {
	if l.done != nil {
		<-l.done
	}
}

// sharedRunTests are the tests of sharedRunScenarios that -run selects.
func sharedRunTests() []string {
	var tests []string
	for _, t := range []string{"TestScenarioOutcomes", "TestGatewayScenarios", "TestDeployDayScenarios"} {
		if selected(t, "") {
			tests = append(tests, t)
		}
	}
	return tests
}
