package load

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/samlha/samlha/cmd/samllab/internal/results"
	"github.com/samlha/samlha/sp/sptest"
)

// LatencyBuckets are the upper bounds, in milliseconds, of the latency
// histogram.
var LatencyBuckets = []float64{10, 20, 50, 100, 200, 500, 1000, 2000, 5000}

// Summarize fills the measured parts of sc from what the browsers saw.
// replicas lists the replica IDs in order (so a replica that served nothing
// still appears); faulted maps a replica ID to the fault that hit it.
func Summarize(sc *results.Scenario, out *Outcome, opts Options, replicas []string, faulted map[string]string) {
	opts.defaults()
	sc.Load = results.Load{Logins: opts.Logins, Concurrency: opts.Concurrency,
		ThinkTime: results.Duration(opts.ThinkTime), FollowUps: opts.FollowUps}
	sc.Started = out.Start
	sc.Duration = results.Duration(out.Duration)
	sc.Logins = results.Logins{Failed: map[string]int{}}
	sc.Sessions = results.Sessions{LostBy: map[string]int{}, ErrorsBy: map[string]int{}, RevisitLostBy: map[string]int{}, RevisitErrorsBy: map[string]int{}}

	t := tally{start: out.Start, reqs: map[string]int{}, acs: map[string]int{}, decisions: map[string]int{}}
	for _, rec := range out.Records {
		t.record(sc, rec)
	}
	if out.NotTried > 0 {
		sc.Notes = append(sc.Notes, fmt.Sprintf("%d logins were not tried: the run's deadline passed", out.NotTried))
	}
	sc.Latency = latencySummary(t.latencies)

	ids := t.instances(replicas)
	sc.Replicas = nil
	for _, id := range ids {
		sc.Replicas = append(sc.Replicas, results.Replica{ID: id, Requests: t.reqs[id], ACS: t.acs[id], Fault: faulted[id]})
	}
	sc.Imbalance = imbalance(t.reqs, ids)
	sc.Timeline = timeline(t.points, ids, out.Duration)

	sc.Faults = nil
	for _, f := range out.Faults {
		sc.Faults = append(sc.Faults, results.Fault{Kind: f.Kind, Target: f.Target, At: results.Duration(f.At)})
		if f.Err != nil {
			sc.Notes = append(sc.Notes, fmt.Sprintf("fault %s %s failed: %v", f.Kind, f.Target, f.Err))
		} else {
			sc.Notes = append(sc.Notes, fmt.Sprintf("%s %s at %.1fs", f.Kind, f.Target, f.At.Seconds()))
		}
	}
	if n := len(out.Faults); n > 0 {
		sc.Notes = append(sc.Notes, recoveryNote(out, out.Faults[n-1]))
	}
	for _, f := range out.Faults {
		if f.Kind == "scale-out" && f.Err == nil {
			if note, ok := scaleOutNote(f, t.points, len(ids)); ok {
				sc.Notes = append(sc.Notes, note)
			}
		}
	}
	if len(t.decisions) > 0 {
		var parts []string
		for d, c := range t.decisions {
			parts = append(parts, fmt.Sprintf("%s %d", d, c))
		}
		slices.Sort(parts)
		sc.Notes = append(sc.Notes, "proxy decisions: "+strings.Join(parts, ", "))
	}
}

// point is one SP request on the run's timeline.
type point struct {
	at       time.Duration
	instance string
}

// tally counts what the records saw, per replica and per outcome.
type tally struct {
	start     time.Time
	reqs      map[string]int // SP requests per instance
	acs       map[string]int // SAML responses posted per instance
	decisions map[string]int // the proxy's routing decisions
	points    []point
	latencies []float64 // successful logins, ms, think time excluded
}

// hops counts a browser's hops; timeline puts them on the timeline too.
func (t *tally) hops(hops []sptest.Hop, timeline bool) {
	for _, h := range hops {
		if h.ProxyDecision != "" {
			t.decisions[h.ProxyDecision]++
		}
		if h.Instance == "" {
			continue
		}
		t.reqs[h.Instance]++
		if h.Form == sptest.FormSAMLResponse {
			t.acs[h.Instance]++
		}
		if timeline {
			t.points = append(t.points, point{h.Start.Sub(t.start), h.Instance})
		}
	}
}

// record adds one user's login, follow-ups and revisit to sc.
func (t *tally) record(sc *results.Scenario, rec *Record) {
	r := rec.Login
	sc.Logins.Tried++
	t.hops(r.Hops, true)
	if r.StartInstance != "" && r.ACSInstance != "" && r.StartInstance != r.ACSInstance {
		sc.Logins.Crossed++
	}
	if r.OK {
		sc.Logins.Succeeded++
		t.latencies = append(t.latencies, float64((r.Duration-rec.Think).Microseconds())/1000)
	} else {
		cause := r.Cause
		if cause == "" {
			cause = "unknown"
		}
		sc.Logins.Failed[cause]++
	}
	if f := rec.Revisit; f != nil {
		// Counted per replica, but kept off the timeline: the revisit
		// is a burst after the run, not part of its load over time.
		t.hops(f.Hops, false)
		sc.Sessions.Revisited++
		switch {
		case f.Held:
			sc.Sessions.Survived++
		case f.Error:
			sc.Sessions.RevisitErrors++
			sc.Sessions.RevisitErrorsBy[f.Cause]++
		default:
			sc.Sessions.Gone++
			sc.Sessions.RevisitLostBy[f.Cause]++
		}
	}
	for _, f := range rec.FollowUps {
		t.hops(f.Hops, true)
		sc.Sessions.Checked++
		switch {
		case f.Held:
			sc.Sessions.Held++
		case f.Error:
			sc.Sessions.Errors++
			sc.Sessions.ErrorsBy[f.Cause]++
		default:
			sc.Sessions.Lost++
			sc.Sessions.LostBy[f.Cause]++
		}
	}
}

// instances lists the replicas in the order given, then any other instance
// seen, sorted.
func (t *tally) instances(replicas []string) []string {
	ids := slices.Clone(replicas)
	for id := range t.reqs {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids[len(replicas):])
	return ids
}

// imbalance is the busiest replica's requests over the mean, to two
// decimals; 0 when nothing was served.
func imbalance(reqs map[string]int, ids []string) float64 {
	total, busiest := 0, 0
	for _, id := range ids {
		total += reqs[id]
		busiest = max(busiest, reqs[id])
	}
	if len(ids) == 0 || total == 0 {
		return 0
	}
	mean := float64(total) / float64(len(ids))
	return math.Round(float64(busiest)/mean*100) / 100
}

// timeline puts the points in about 60 buckets over the run, at least
// 100 ms each, one series per instance.
func timeline(points []point, ids []string, d time.Duration) results.Timeline {
	bucket := max(100*time.Millisecond, (d / 60).Round(100*time.Millisecond))
	n := int(d/bucket) + 1
	tl := results.Timeline{Bucket: results.Duration(bucket), Series: map[string][]int{}}
	for _, id := range ids {
		tl.Series[id] = make([]int, n)
	}
	for _, p := range points {
		i := min(max(int(p.at/bucket), 0), n-1)
		tl.Series[p.instance][i]++
	}
	return tl
}

// scaleOutNote says how soon the replica a scale-out started carried its
// share: its requests among all requests after it joined, and the first
// one it served. ok is false when nothing was requested after it joined.
func scaleOutNote(f AppliedFault, points []point, replicas int) (note string, ok bool) {
	total, its := 0, 0
	first := time.Duration(-1)
	for _, p := range points {
		if p.at < f.At {
			continue
		}
		total++
		if p.instance == f.Target {
			its++
			if first < 0 || p.at < first {
				first = p.at
			}
		}
	}
	if total == 0 {
		return "", false
	}
	note = fmt.Sprintf("after %s was started at %.1fs it served %d of the %d requests made (%.0f%%; an even share is %.0f%%)",
		f.Target, f.At.Seconds(), its, total, 100*float64(its)/float64(total), 100/float64(replicas))
	if first >= 0 {
		note += fmt.Sprintf("; its first request came %.2fs after its start", (first - f.At).Seconds())
	}
	return note, true
}

func latencySummary(ms []float64) results.Latency {
	l := results.Latency{Buckets: LatencyBuckets, Counts: make([]int, len(LatencyBuckets)+1)}
	if len(ms) == 0 {
		return l
	}
	slices.Sort(ms)
	l.P50, l.P95, l.P99, l.Max = percentile(ms, 50), percentile(ms, 95), percentile(ms, 99), ms[len(ms)-1]
	for _, v := range ms {
		i, _ := slices.BinarySearch(LatencyBuckets, v)
		l.Counts[i]++
	}
	return l
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return math.Round(sorted[max(rank-1, 0)]*10) / 10
}

// recoveryNote says how the logins that began after the last fault fared:
// how long until the first succeeded, and how many failed after that.
func recoveryNote(out *Outcome, f AppliedFault) string {
	at := out.Start.Add(f.At)
	var after []*Record
	for _, r := range out.Records {
		if !r.Start.Before(at) {
			after = append(after, r)
		}
	}
	slices.SortFunc(after, func(a, b *Record) int { return a.Start.Compare(b.Start) })
	first := -1
	for i, r := range after {
		if r.Login.OK {
			first = i
			break
		}
	}
	switch {
	case len(after) == 0:
		return fmt.Sprintf("after %s %s: no login began", f.Kind, f.Target)
	case first < 0:
		return fmt.Sprintf("after %s %s: none of the %d logins that began succeeded", f.Kind, f.Target, len(after))
	}
	failedLater := 0
	for _, r := range after[first:] {
		if !r.Login.OK {
			failedLater++
		}
	}
	return fmt.Sprintf("after %s %s: %d logins began; %d failed before the first success (%.2fs after the fault), %d failed after it",
		f.Kind, f.Target, len(after), first, after[first].Start.Sub(at).Seconds(), failedLater)
}
