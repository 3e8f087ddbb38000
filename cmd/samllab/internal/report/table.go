package report

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/samlha/samlha/cmd/samllab/internal/results"
)

// tableWidth is the width the table keeps to, in columns.
const tableWidth = 120

// Why the table lays itself out rather than use text/tabwriter or
// tablewriter: its numbers are right-aligned and its text left-aligned in
// the same row (tabwriter aligns every column one way), and a scenario has
// lines that span the row (failure causes, a skipped scenario's reason)
// between aligned rows (tabwriter restarts its column blocks at a line with
// fewer cells). tablewriter does both, but brings half a dozen modules and
// box drawing that costs columns this table needs; the layout here is a
// width per column and a word wrapper.

// column is one column of the table.
type column struct {
	title string
	right bool // right-aligned (numbers)
}

var columns = []column{
	{"SCENARIO", false},
	{"TRIED", true},
	{"SUCCEEDED", true},
	{"%", true},
	{"P50 ms", true},
	{"P95 ms", true},
	{"P99 ms", true},
	{"IMBAL", true},
	{"LOST", true},
	{"GONE", true},
	{"REQUESTS", false},
}

// legend explains the table's abbreviations below it.
var legend = []string{
	"P50/P95/P99: latency of successful logins. IMBAL: the busiest replica's requests over the mean (1.00 is even).",
	"LOST: follow-up requests right after login that found no session, of those made (errors such as a 502 from a killed",
	"replica are counted apart, below the row). GONE: users whose session was gone when they came back after the faults,",
	"of those who logged in (errors apart). REQUESTS: SP requests per replica. " + faultSign + ": faulted.",
}

// tableRow is one scenario: its cells, or the reason it was skipped, and
// the lines that follow it.
type tableRow struct {
	cells   []string
	skipped string
	// more are continuation lines: a label and the tokens to wrap after it.
	more []continuation
}

type continuation struct {
	label  string
	tokens []string
}

// Table writes run as a table for a terminal: one row per scenario (logins
// tried, succeeded, latency percentiles, imbalance, sessions lost, requests
// per replica), with the failures by cause, sessions lost by cause and the
// faults on lines below it, all within 120 columns. A skipped scenario
// shows its reason. Write errors are not reported: this is for a terminal.
func Table(w io.Writer, run *results.Run) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	if run == nil || len(run.Scenarios) == 0 {
		fmt.Fprintln(bw, "no scenarios")
		return
	}

	matrixTable(bw, run)
	rows := make([]tableRow, 0, len(run.Scenarios))
	for _, s := range run.Scenarios {
		rows = append(rows, newTableRow(s))
	}

	// Column widths, over the header and every row that has cells.
	widths := make([]int, len(columns))
	for i, c := range columns {
		widths[i] = width(c.title)
	}
	for _, r := range rows {
		widths[0] = max(widths[0], width(r.cells[0]))
		for i, c := range r.cells {
			if r.skipped == "" {
				widths[i] = max(widths[i], width(c))
			}
		}
	}
	// Where the last column starts; when a row's replicas do not fit after
	// it they go on a continuation line instead.
	last := len(columns) - 1
	start := 0
	for _, wd := range widths[:last] {
		start += wd + 2
	}

	titles := make([]string, len(columns))
	for i, c := range columns {
		titles[i] = c.title
	}
	writeCells(bw, titles, widths)
	for _, r := range rows {
		if r.skipped != "" {
			lead := pad(r.cells[0], widths[0], false) + "  "
			wrap(bw, lead, strings.Fields("skipped: "+r.skipped), len(lead))
			continue
		}
		if start+width(r.cells[last]) > tableWidth {
			r.more = append([]continuation{{"requests", strings.Fields(r.cells[last])}}, r.more...)
			r.cells[last] = ""
		}
		writeCells(bw, r.cells, widths)
		for _, m := range r.more {
			lead := "  " + m.label + ": "
			wrap(bw, lead, m.tokens, len(lead))
		}
	}
	fmt.Fprintln(bw)
	for _, l := range legend {
		fmt.Fprintln(bw, l)
	}
}

func newTableRow(s results.Scenario) tableRow {
	if s.Skipped != "" {
		return tableRow{cells: []string{s.Name}, skipped: s.Skipped}
	}
	if s.Error != "" && s.Logins.Tried == 0 {
		return tableRow{cells: []string{s.Name}, skipped: "FAILED: " + firstLine(s.Error)}
	}
	l := s.Logins
	r := tableRow{cells: []string{
		s.Name,
		fmt.Sprint(l.Tried),
		fmt.Sprint(l.Succeeded),
		percent(l.Succeeded, l.Tried),
		millis(s.Latency.P50, l.Succeeded),
		millis(s.Latency.P95, l.Succeeded),
		millis(s.Latency.P99, l.Succeeded),
		imbalance(s.Imbalance),
		lost(s.Sessions),
		endLost(s.Sessions),
		strings.Join(replicaTokens(s.Replicas), " "),
	}}
	if n := l.FailedTotal(); n > 0 {
		r.more = append(r.more, continuation{fmt.Sprintf("failed %d", n), causeTokens(l.Failed)})
	}
	if len(s.Sessions.LostBy) > 0 {
		r.more = append(r.more, continuation{fmt.Sprintf("sessions lost %d", s.Sessions.Lost), causeTokens(s.Sessions.LostBy)})
	}
	if len(s.Sessions.ErrorsBy) > 0 {
		r.more = append(r.more, continuation{fmt.Sprintf("follow-up errors %d", s.Sessions.Errors), causeTokens(s.Sessions.ErrorsBy)})
	}
	if s.Sessions.Gone > 0 && len(s.Sessions.RevisitLostBy) > 0 {
		r.more = append(r.more, continuation{fmt.Sprintf("gone at end %d", s.Sessions.Gone), causeTokens(s.Sessions.RevisitLostBy)})
	}
	if s.Sessions.RevisitErrors > 0 {
		r.more = append(r.more, continuation{fmt.Sprintf("errors at end %d", s.Sessions.RevisitErrors), causeTokens(s.Sessions.RevisitErrorsBy)})
	}
	if w := s.Window; w != nil {
		r.more = append(r.more, continuation{"failover window", strings.Fields(w.String())})
	}
	if c := s.Chromium; c != nil {
		r.more = append(r.more, continuation{"chromium", strings.Fields(chromiumText(c))})
	}
	if s.Error != "" {
		r.more = append(r.more, continuation{"FAILED", strings.Fields(firstLine(s.Error))})
	}
	if len(s.Faults) > 0 {
		var fs []string
		for i, f := range s.Faults {
			sep := ","
			if i == len(s.Faults)-1 {
				sep = ""
			}
			fs = append(fs, faultLabel(f), "at", duration(f.At)+sep)
		}
		r.more = append(r.more, continuation{"faults", fs})
	}
	return r
}

// writeCells writes one aligned line, two spaces between columns and no
// trailing blanks.
func writeCells(w io.Writer, cells []string, widths []int) {
	var b strings.Builder
	for i, c := range cells {
		if i > 0 {
			b.WriteString("  ")
		}
		b.WriteString(pad(printable(c), widths[i], columns[i].right))
	}
	fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
}

// wrap writes lead and then the tokens separated by spaces, starting a new
// line indented by indent columns before a token that would pass
// tableWidth. A token longer than a line stays whole.
func wrap(w io.Writer, lead string, tokens []string, indent int) {
	line := printable(lead)
	col := width(lead)
	fresh := true // nothing but the lead or indent on this line yet
	for _, t := range tokens {
		t = printable(t)
		if !fresh && col+1+width(t) > tableWidth {
			fmt.Fprintln(w, line)
			line, col, fresh = strings.Repeat(" ", indent), indent, true
		}
		if !fresh {
			line += " "
			col++
		}
		line += t
		col += width(t)
		fresh = false
	}
	fmt.Fprintln(w, line)
}

// pad pads s with spaces to n columns, on the left when right is set.
func pad(s string, n int, right bool) string {
	fill := strings.Repeat(" ", max(0, n-width(s)))
	if right {
		return fill + s
	}
	return s + fill
}

// width is the columns s takes on a terminal: one a rune, which holds for
// what the table prints (ASCII names and numbers, and faultSign).
func width(s string) int { return utf8.RuneCountInString(s) }

// firstLine is s up to its first newline (an error's headline; the logs
// hold the rest).
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// chromiumText sums up the real-browser comparison of a scenario.
func chromiumText(c *results.Chromium) string {
	return fmt.Sprintf("%d logins, %d succeeded; agreed with the scripted browser on %d of %d", c.Logins, c.Succeeded, c.Agreed, c.Logins)
}
