// Package results is the lab's record of a run: what each scenario did to
// logins, written as results.json and rendered as the terminal table and
// report.html. It is plain data with JSON tags; the lab fills it, the
// report reads it, and a results.json from an earlier run can be rendered
// again.
package results

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"
)

// Version of the results.json layout.
const Version = 1

// Run is one invocation of samllab run.
type Run struct {
	Version  int       `json:"version"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Host describes the machine: CPU count, OS, Go version, samlha commit.
	Host map[string]string `json:"host"`
	// Target is the URL driven with --target (empty when the lab started
	// its own topology).
	Target string `json:"target,omitempty"`
	// Dir is the run directory holding this file, the report and the
	// children's logs.
	Dir string `json:"dir"`
	// Parallel is how many scenarios ran at once at most (samllab run
	// --parallel; 0 in a file from before it): the latencies of a
	// scenario that ran beside others include their load. Those marked to
	// run alone ran alone.
	Parallel  int        `json:"parallel,omitempty"`
	Scenarios []Scenario `json:"scenarios"`
	// Error says why the run as a whole stopped early (the binaries did
	// not build, Ctrl-C), if it did.
	Error string `json:"error,omitempty"`
}

// Scenario is one scenario of the matrix (or one phase of a two-phase
// scenario, such as sticky-lax-cookie's "lax" and "twin").
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Strategy is affinity, shared or stateless (DESIGN.md section 1).
	Strategy string `json:"strategy"`
	// Topology in words: "3 x samlsp (memory) behind stickyproxy (sticky, duration, twin), TLS".
	Topology string `json:"topology"`
	// Expect says what the scenario is meant to show, for the reader.
	Expect string `json:"expect"`
	// Fault is the scenario's column in the strategy x fault verdict
	// matrix (see Faults): none, replica-killed, drain, ...
	Fault string `json:"fault,omitempty"`
	// Skipped, when set, says why the scenario did not run (e.g. no
	// redis-server and no --redis-url).
	Skipped string `json:"skipped,omitempty"`
	// Error, when set, says why the scenario failed as an experiment: its
	// topology did not start, or one of its processes crashed without a
	// fault causing it. Its numbers, if any, are then not a verdict; Logs
	// name the logs to read.
	Error string `json:"error,omitempty"`

	Load     Load      `json:"load"`
	Started  time.Time `json:"started"`
	Duration Duration  `json:"duration"`

	Logins   Logins   `json:"logins"`
	Sessions Sessions `json:"sessions"`
	// Latency of successful logins, think time excluded.
	Latency Latency `json:"latency"`
	// Replicas are the SP replicas by instance ID, in order.
	Replicas []Replica `json:"replicas"`
	// Imbalance is the busiest replica's share of SP requests divided by
	// the mean share (1.0 is perfectly even; N means one of N replicas took
	// everything).
	Imbalance float64 `json:"imbalance"`
	// Timeline is SP requests per replica per second, for the load chart.
	Timeline Timeline `json:"timeline"`
	// Faults are the faults injected, with when they happened.
	Faults []Fault `json:"faults,omitempty"`
	// Logs names each child process's log file, relative to Run.Dir.
	Logs map[string]string `json:"logs,omitempty"`
	// Chromium is what real headless Chromium logins did beside the
	// scripted browser (samllab run --chromium N); nil if none ran.
	Chromium *Chromium `json:"chromium,omitempty"`
	// Notes are observations the lab made (e.g. "sp-2 was killed at 3.1s").
	Notes []string `json:"notes,omitempty"`
	// Window is the store failover as the lab saw it (nil but for a
	// store-failover scenario).
	Window *Window `json:"failover_window,omitempty"`
}

// Window is a store failover as the lab saw it: the time from the master's
// kill to the Sentinel's +switch-master (Switched false if none was heard
// before the run ended), and how long each replica's store held its
// operations (from the first that found the master gone to the first that
// went through again), as the replica logged it, by replica ID.
type Window struct {
	Switch   Duration            `json:"switch"`
	Switched bool                `json:"switched"`
	Held     map[string]Duration `json:"held,omitempty"`
}

// String says it in one line: "+switch-master 2.15s after the kill; store
// operations held 2.12s to 2.16s (3 replicas)".
func (w Window) String() string {
	s := "no +switch-master heard before the run ended"
	if w.Switched {
		s = fmt.Sprintf("+switch-master %.2fs after the kill", time.Duration(w.Switch).Seconds())
	}
	if len(w.Held) == 0 {
		return s
	}
	var lo, hi time.Duration
	first := true
	for _, d := range w.Held {
		if first || time.Duration(d) < lo {
			lo = time.Duration(d)
		}
		if first || time.Duration(d) > hi {
			hi = time.Duration(d)
		}
		first = false
	}
	return s + fmt.Sprintf("; store operations held %.2fs to %.2fs (%d replicas)", lo.Seconds(), hi.Seconds(), len(w.Held))
}

// Chromium compares real Chromium logins with the scripted browser's, made
// in pairs on the same topology after the scenario's load.
type Chromium struct {
	Logins    int `json:"logins"`
	Succeeded int `json:"succeeded"`
	// Agreed counts pairs where both browsers sent the same cookies with
	// the ACS POST and, where both were routed alike (the ACS POST on the
	// replica that began the login, or not), reached the same outcome and
	// cause.
	Agreed int `json:"agreed"`
	// Disagreements says how each other pair differed.
	Disagreements []string `json:"disagreements,omitempty"`
}

// Load is how the scenario was driven.
type Load struct {
	Logins      int      `json:"logins"`
	Concurrency int      `json:"concurrency"`
	ThinkTime   Duration `json:"think_time"`
	// FollowUps is how many requests to /app each user makes after
	// logging in, to see whether the session holds.
	FollowUps int `json:"follow_ups"`
}

// Logins counts login attempts by outcome.
type Logins struct {
	Tried     int `json:"tried"`
	Succeeded int `json:"succeeded"`
	// Failed counts failed logins by cause: the SP's named cause
	// (X-Samlha-Cause) or the browser's own (transport-error, ...).
	Failed map[string]int `json:"failed"`
	// Crossed counts logins whose ACS POST reached a replica other than
	// the one that began the login.
	Crossed int `json:"crossed"`
}

// FailedTotal is the number of failed logins.
func (l Logins) FailedTotal() int {
	n := 0
	for _, v := range l.Failed {
		n += v
	}
	return n
}

// Causes lists the failure causes, most frequent first (ties by name).
func (l Logins) Causes() []string {
	var cs []string
	for c := range l.Failed {
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b string) int {
		if l.Failed[a] != l.Failed[b] {
			return l.Failed[b] - l.Failed[a]
		}
		if a < b {
			return -1
		}
		return 1
	})
	return cs
}

// SuccessRate is Succeeded / Tried (0 when nothing was tried).
func (l Logins) SuccessRate() float64 {
	if l.Tried == 0 {
		return 0
	}
	return float64(l.Succeeded) / float64(l.Tried)
}

// Sessions counts what happened to sessions after login.
type Sessions struct {
	// Checked is the number of follow-up requests made by logged-in users.
	Checked int `json:"checked"`
	// Held is how many of them were served with the session.
	Held int `json:"held"`
	// Lost is how many found no session: the SP sent the user to log in
	// again, or named a session cause (session-*). The session was gone.
	Lost int `json:"lost"`
	// LostBy counts lost follow-ups by cause.
	LostBy map[string]int `json:"lost_by,omitempty"`
	// Errors is how many failed otherwise (a 502 from a killed replica, a
	// 503 store-unavailable, a transport error): the request failed, and
	// says nothing of whether the session still exists.
	Errors int `json:"errors"`
	// ErrorsBy counts failed follow-ups by cause.
	ErrorsBy map[string]int `json:"errors_by,omitempty"`

	// At the end of the scenario, after every fault, each user who logged
	// in asks for /app once more: Revisited users, of whom Survived still
	// had their session, Gone had lost it and RevisitErrors got an error.
	// This is where a fault's toll on sessions shows.
	Revisited     int `json:"revisited"`
	Survived      int `json:"survived"`
	Gone          int `json:"gone"`
	RevisitErrors int `json:"revisit_errors"`
	// RevisitLostBy counts the sessions gone at the end, by cause;
	// RevisitErrorsBy the errors.
	RevisitLostBy   map[string]int `json:"revisit_lost_by,omitempty"`
	RevisitErrorsBy map[string]int `json:"revisit_errors_by,omitempty"`
}

// SurvivalRate is the share of revisited sessions that survived (0 when
// none was revisited).
func (s Sessions) SurvivalRate() float64 {
	if s.Revisited == 0 {
		return 0
	}
	return float64(s.Survived) / float64(s.Revisited)
}

// Latency holds percentiles in milliseconds and a histogram of login
// latencies for the distribution chart.
type Latency struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
	// Buckets are histogram bucket upper bounds in milliseconds, and
	// Counts how many successful logins fell in each (len(Counts) ==
	// len(Buckets)+1: the last counts those above the last bound).
	Buckets []float64 `json:"buckets_ms"`
	Counts  []int     `json:"counts"`
}

// Replica is one SP replica's share of the scenario.
type Replica struct {
	ID string `json:"id"`
	// Requests is the number of SP requests (any path) it served.
	Requests int `json:"requests"`
	// ACS is the number of ACS POSTs it received.
	ACS int `json:"acs"`
	// Fault is set if a fault hit this replica ("killed", "drained").
	Fault string `json:"fault,omitempty"`
}

// Timeline is SP requests per replica per time bucket, during the run (the
// end-of-scenario revisit is left out of it).
type Timeline struct {
	Bucket Duration `json:"bucket"`
	// Series maps replica ID to counts per bucket, from the scenario's
	// start.
	Series map[string][]int `json:"series"`
}

// Fault is an injected fault.
type Fault struct {
	// Kind: kill-replica, drain-replica, stop-redis, start-redis,
	// restart-proxy, ...
	Kind string `json:"kind"`
	// Target names what it hit: "sp-2", "redis".
	Target string `json:"target"`
	// At is the time since the scenario's start.
	At Duration `json:"at"`
}

// Duration is a time.Duration that reads and writes as a string ("1.5s")
// in JSON.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Seconds is d in seconds.
func (d Duration) Seconds() float64 { return time.Duration(d).Seconds() }

// Write writes r as indented JSON to path.
func Write(path string, r *Run) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Read reads a results.json.
func Read(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &Run{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Version != Version {
		return nil, fmt.Errorf("%s: results version %d, this samllab reads %d", path, r.Version, Version)
	}
	return r, nil
}
