// Package report renders a finished lab run (results.Run) for people: Table
// writes the terminal table and HTML writes report.html, a single page that
// opens offline with its charts (Chart.js is inlined, nothing is fetched).
// Both read only the run they are given, so a results.json from an earlier
// run renders the same way again, and both are safe to call concurrently.
package report

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/samlha/samlha/cmd/samllab/internal/results"
)

// faultSign follows the ID of a replica that a fault hit, in the table and
// in the page's replica lists.
const faultSign = "✝"

// count is one cause and how often it happened.
type count struct {
	Cause string `json:"cause"`
	N     int    `json:"n"`
}

// byCause lists m's causes, most frequent first (ties by name), the order
// results.Logins.Causes defines.
func byCause(m map[string]int) []count {
	cs := results.Logins{Failed: m}.Causes()
	out := make([]count, 0, len(cs))
	for _, c := range cs {
		out = append(out, count{c, m[c]})
	}
	return out
}

// causeTokens formats m as "cause:n" tokens, most frequent first.
func causeTokens(m map[string]int) []string {
	var ts []string
	for _, c := range byCause(m) {
		ts = append(ts, c.Cause+":"+strconv.Itoa(c.N))
	}
	return ts
}

// replicaTokens formats each replica's requests as "sp-1:410", with
// faultSign after one that a fault hit.
func replicaTokens(rs []results.Replica) []string {
	ts := make([]string, 0, len(rs))
	for _, r := range rs {
		t := r.ID + ":" + strconv.Itoa(r.Requests)
		if r.Fault != "" {
			t += faultSign
		}
		ts = append(ts, t)
	}
	return ts
}

// percent is n/of as "34.7%", or "-" when of is 0.
func percent(n, of int) string {
	if of == 0 {
		return "-"
	}
	return strconv.FormatFloat(100*float64(n)/float64(of), 'f', 1, 64) + "%"
}

// millis formats a latency in milliseconds, or "-" when no login
// succeeded (the percentiles are then zero and mean nothing).
func millis(v float64, succeeded int) string {
	if succeeded == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// imbalance formats Scenario.Imbalance, or "-" when it was not measured.
func imbalance(v float64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// lost formats sessions lost over sessions checked, or "-" when no
// follow-up request was made.
func lost(s results.Sessions) string {
	if s.Checked == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d", s.Lost, s.Checked)
}

// endLost is the end-of-scenario revisit as "gone/revisited", or "-".
func endLost(s results.Sessions) string {
	if s.Revisited == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d", s.Gone, s.Revisited)
}

// faultLabel names a fault for a chart marker: the kind's verb and the
// target, "kill sp-2" for kill-replica on sp-2, "stop redis" for stop-redis.
func faultLabel(f results.Fault) string {
	verb, _, _ := strings.Cut(f.Kind, "-")
	switch {
	case f.Target == "":
		return f.Kind
	case verb == "":
		return f.Target
	}
	return verb + " " + f.Target
}

// duration formats d rounded to the millisecond ("3.2s", "1m30.5s").
func duration(d results.Duration) string {
	return time.Duration(d).Round(time.Millisecond).String()
}

// when formats a time for the reader, in the zone it was recorded in.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format("2006-01-02 15:04:05 MST")
}

// printable replaces control characters (newlines, tabs, terminal escapes)
// with '?', rune for rune, so a name or cause from a results.json cannot
// break the table's lines or drive the terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}
