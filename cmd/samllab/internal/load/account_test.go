package load

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/samlha/samlha/cmd/samllab/internal/results"
	"github.com/samlha/samlha/sp/sptest"
)

// hop makes an SP hop at offset ms from t0.
func hop(t0 time.Time, ms int, instance, form, decision string) sptest.Hop {
	return sptest.Hop{Start: t0.Add(time.Duration(ms) * time.Millisecond), Instance: instance, Form: form, ProxyDecision: decision, Status: 200}
}

func TestSummarize(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	idp := sptest.Hop{Start: t0, Form: sptest.FormLogin} // an IdP hop: no instance
	out := &Outcome{Start: t0, Duration: 2 * time.Second, NotTried: 1, Records: []*Record{
		{ // began on sp-1, finished on sp-1: success, session held twice
			Login: &sptest.Result{OK: true, Duration: 120 * time.Millisecond, StartInstance: "sp-1", ACSInstance: "sp-1",
				Hops: []sptest.Hop{hop(t0, 0, "sp-1", "", "new"), idp, hop(t0, 50, "sp-1", sptest.FormSAMLResponse, "pinned"), hop(t0, 60, "sp-1", "", "pinned")}},
			Think: 20 * time.Millisecond,
			FollowUps: []FollowUp{{Held: true, Hops: []sptest.Hop{hop(t0, 1000, "sp-1", "", "pinned")}},
				{Held: true, Hops: []sptest.Hop{hop(t0, 1100, "sp-1", "", "pinned")}}},
			Revisit: &FollowUp{Cause: "relogin"},
			Start:   t0,
		},
		{ // began on sp-1, ACS on sp-2: cross-instance failure
			Login: &sptest.Result{Cause: "state-not-found-cross-instance", Duration: 90 * time.Millisecond, StartInstance: "sp-1", ACSInstance: "sp-2",
				Hops: []sptest.Hop{hop(t0, 200, "sp-1", "", "new"), idp, hop(t0, 250, "sp-2", sptest.FormSAMLResponse, "balanced")}},
		},
		{ // crossed but succeeded (shared store), one session lost afterwards
			Login: &sptest.Result{OK: true, Duration: 300 * time.Millisecond, StartInstance: "sp-2", ACSInstance: "sp-3",
				Hops: []sptest.Hop{hop(t0, 1500, "sp-2", "", ""), hop(t0, 1600, "sp-3", sptest.FormSAMLResponse, ""), hop(t0, 1650, "sp-3", "", "")}},
			// A 502 from the killed replica is an error, not a lost
			// session.
			FollowUps: []FollowUp{{Cause: "relogin", Hops: []sptest.Hop{hop(t0, 1900, "sp-1", "", "")}},
				{Error: true, Cause: "http-502"}},
			Revisit: &FollowUp{Held: true},
			Start:   t0.Add(1500 * time.Millisecond),
		},
		{ // a transport failure without a named cause
			Login: &sptest.Result{Cause: "", Duration: time.Second},
			Start: t0.Add(1600 * time.Millisecond),
		},
	}, Faults: []AppliedFault{{Kind: "kill", Target: "sp-2", At: 1500 * time.Millisecond}}}

	var sc results.Scenario
	Summarize(&sc, out, Options{Logins: 5, Concurrency: 2, FollowUps: 2, ThinkTime: 20 * time.Millisecond}, []string{"sp-1", "sp-2", "sp-3", "sp-4"}, map[string]string{"sp-2": "kill"})

	wantLogins := results.Logins{Tried: 4, Succeeded: 2, Crossed: 2,
		Failed: map[string]int{"state-not-found-cross-instance": 1, "unknown": 1}}
	if diff := cmp.Diff(wantLogins, sc.Logins); diff != "" {
		t.Errorf("logins (-want +got):\n%s", diff)
	}
	wantSessions := results.Sessions{Checked: 4, Held: 2, Lost: 1, LostBy: map[string]int{"relogin": 1},
		Errors: 1, ErrorsBy: map[string]int{"http-502": 1},
		Revisited: 2, Survived: 1, Gone: 1, RevisitLostBy: map[string]int{"relogin": 1}, RevisitErrorsBy: map[string]int{}}
	if diff := cmp.Diff(wantSessions, sc.Sessions); diff != "" {
		t.Errorf("sessions (-want +got):\n%s", diff)
	}
	wantReplicas := []results.Replica{
		{ID: "sp-1", Requests: 7, ACS: 1},
		{ID: "sp-2", Requests: 2, ACS: 1, Fault: "kill"},
		{ID: "sp-3", Requests: 2, ACS: 1},
		{ID: "sp-4"},
	}
	if diff := cmp.Diff(wantReplicas, sc.Replicas); diff != "" {
		t.Errorf("replicas (-want +got):\n%s", diff)
	}
	// 11 SP requests over 4 replicas: mean 2.75, busiest 7.
	if sc.Imbalance != 2.55 {
		t.Errorf("imbalance %v, want 2.55", sc.Imbalance)
	}
	// Latency of the two successes, think time taken out: 100 ms and 300 ms.
	if sc.Latency.P50 != 100 || sc.Latency.Max != 300 || sc.Latency.P99 != 300 {
		t.Errorf("latency %+v", sc.Latency)
	}
	if got := sc.Latency.Counts; got[3] != 1 || got[4] != 0 || got[5] != 1 {
		t.Errorf("histogram counts %v: want 100 ms in the <=100 bucket and 300 ms in <=500", got)
	}
	// Timeline: 100 ms buckets over 2 s.
	if time.Duration(sc.Timeline.Bucket) != 100*time.Millisecond || len(sc.Timeline.Series["sp-1"]) != 21 {
		t.Fatalf("timeline bucket %v, %d buckets", time.Duration(sc.Timeline.Bucket), len(sc.Timeline.Series["sp-1"]))
	}
	if s := sc.Timeline.Series["sp-1"]; s[0] != 3 || s[2] != 1 || s[10] != 1 || s[11] != 1 || s[19] != 1 {
		t.Errorf("sp-1 timeline %v", s)
	}
	total := 0
	for _, s := range sc.Timeline.Series {
		for _, n := range s {
			total += n
		}
	}
	if total != 11 {
		t.Errorf("timeline holds %d requests, want 11", total)
	}
	if len(sc.Faults) != 1 || sc.Faults[0].Target != "sp-2" || time.Duration(sc.Faults[0].At) != 1500*time.Millisecond {
		t.Errorf("faults %+v", sc.Faults)
	}
	notes := map[string]bool{}
	for _, n := range sc.Notes {
		notes[n] = true
	}
	for _, want := range []string{"1 logins were not tried: the run's deadline passed", "kill sp-2 at 1.5s",
		"proxy decisions: balanced 1, new 2, pinned 4",
		"after kill sp-2: 2 logins began; 0 failed before the first success (0.00s after the fault), 1 failed after it"} {
		if !notes[want] {
			t.Errorf("notes %q lack %q", sc.Notes, want)
		}
	}
}

func TestSummarizeEmpty(t *testing.T) {
	var sc results.Scenario
	Summarize(&sc, &Outcome{Start: time.Now()}, Options{Logins: 0}, nil, nil)
	if sc.Logins.Tried != 0 || sc.Imbalance != 0 || sc.Latency.P50 != 0 || len(sc.Latency.Counts) != len(LatencyBuckets)+1 {
		t.Errorf("empty outcome summarized as %+v", sc)
	}
}

func TestPercentile(t *testing.T) {
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[float64]float64{50: 5, 95: 10, 99: 10, 10: 1, 100: 10} {
		if got := percentile(v, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
}

// Which follow-up causes mean the session is gone, and which are errors.
func TestSessionLost(t *testing.T) {
	for cause, lost := range map[string]bool{"relogin": true, "session-not-found-cross-instance": true, "session-invalid": true,
		"http-502": false, "store-unavailable": false, "transport-error": false} {
		if SessionLost(cause) != lost {
			t.Errorf("SessionLost(%q) = %v, want %v", cause, !lost, lost)
		}
	}
}

// Scale out: the note says what share of the requests after the start the
// new replica served, and how soon it got its first.
func TestSummarizeScaleOut(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	out := &Outcome{Start: t0, Duration: 3 * time.Second, Records: []*Record{
		{Login: &sptest.Result{OK: true, Hops: []sptest.Hop{hop(t0, 100, "sp-1", "", ""), hop(t0, 1500, "sp-2", "", ""),
			hop(t0, 1800, "sp-4", "", ""), hop(t0, 2000, "sp-1", "", ""), hop(t0, 2200, "sp-4", "", "")}}},
	}, Faults: []AppliedFault{{Kind: "scale-out", Target: "sp-4", At: time.Second}}}
	var sc results.Scenario
	Summarize(&sc, out, Options{Logins: 1}, []string{"sp-1", "sp-2", "sp-3", "sp-4"}, map[string]string{"sp-4": "scale-out"})
	want := "after sp-4 was started at 1.0s it served 2 of the 4 requests made (50%; an even share is 25%); its first request came 0.80s after its start"
	if !slices.Contains(sc.Notes, want) {
		t.Errorf("notes %q lack %q", sc.Notes, want)
	}
}
