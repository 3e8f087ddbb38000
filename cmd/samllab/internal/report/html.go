package report

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/samlha/samlha/cmd/samllab/internal/results"
	"github.com/samlha/samlha/web"
)

// assets are the parsed page template and the script inlined into every
// page, loaded once and only read after that.
var assets = sync.OnceValues(func() (*assetSet, error) {
	t, err := web.ReportTemplate(nil)
	if err != nil {
		return nil, fmt.Errorf("report template: %w", err)
	}
	js, err := web.ChartJS()
	if err != nil {
		return nil, fmt.Errorf("chart.js: %w", err)
	}
	return &assetSet{page: t, chartJS: inlineScript(js), chartVersion: bannerVersion(js)}, nil
})

type assetSet struct {
	page         *template.Template
	chartJS      template.JS
	chartVersion string
}

// bannerVersion reads the version from Chart.js's license banner
// (" * Chart.js v4.6.1"), or "" if it has none.
func bannerVersion(js []byte) string {
	head := string(js[:min(len(js), 200)])
	_, v, ok := strings.Cut(head, "Chart.js v")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(v, " \r\n"); i >= 0 {
		v = v[:i]
	}
	return v
}

// inlineScript prepares a vendored script for a <script> element: it drops
// the source map comment (the map is not shipped, and a browser's developer
// tools would try to fetch it), and writes the '<' of "<!--", "<script" and
// "</script" as \x3C, so the element can neither end early nor enter the
// HTML parser's escaped states. In a library these sequences occur in
// strings, template literals, regular expressions and comments, where \x3C
// means '<' or nothing at all. The vendored Chart.js has none (a test says
// so), so for it this is a guard, not a change.
func inlineScript(js []byte) template.JS {
	s := string(js)
	if i := strings.LastIndex(s, "\n//# sourceMappingURL="); i >= 0 {
		s = s[:i+1]
	}
	return template.JS(scriptOpeners.ReplaceAllString(s, `\x3C$1`))
}

var scriptOpeners = regexp.MustCompile(`(?i)<(!--|/?script)`)

// HTML writes run as report.html: one self-contained page that opens
// offline, with the run's details, a summary table, the charts (success by
// scenario split by cause, latency distributions, per-replica load over time
// with fault markers) and a section per scenario. Chart.js and the run's
// data are inlined; the only links are to the children's log files,
// relative to the report, so write it into run.Dir. Nothing is written
// when the page cannot be rendered.
func HTML(w io.Writer, run *results.Run) error {
	a, err := assets()
	if err != nil {
		return err
	}
	if run == nil {
		run = &results.Run{}
	}
	p := newPage(run)
	p.ChartJS = a.chartJS
	p.Run.ChartJS = a.chartVersion
	var buf bytes.Buffer
	if err := a.page.Execute(&buf, p); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	_, err = buf.WriteTo(w)
	return err
}

// page is what templates/report.html renders. Text is formatted here so
// the template stays plain; Data goes into a <script> as JSON, escaped by
// html/template.
type page struct {
	Title     string
	Matrix    matrixView
	Run       runView
	Scenarios []scenarioView
	Data      chartData
	ChartJS   template.JS
}

type runView struct {
	Version int
	// Heading is when the run started, for the page's heading ("" if not
	// recorded).
	Heading           string
	Started, Finished string
	Duration          string
	Target            string
	Dir               string
	Host              []keyValue
	Ran, Skipped      int
	// ChartJS is the inlined Chart.js's version, from its banner.
	ChartJS string
}

type keyValue struct{ Key, Value string }

type scenarioView struct {
	// ID is the section's element ID, from the scenario's position: names
	// are data and never become IDs.
	ID                                    string
	Name, Description, Strategy, Topology string
	Expect, Skipped                       string
	Error, ErrorHead                      string
	Chromium                              string
	ChromiumDiffs                         []string
	ChromiumGrade                         string
	Load                                  string
	Started, Duration                     string

	Tried, Succeeded, Failed, Crossed int
	SuccessPct, CrossedPct            string
	Grade                             string // good, fair or poor: the success rate, for colour
	Causes                            []causeRow

	Sessions   results.Sessions
	HeldPct    string
	LostCell   string // "lost/checked"
	LostCauses []causeRow
	// The end-of-scenario revisit.
	EndLostCell    string // "gone/revisited"
	SurvivedPct    string
	EndLostCauses  []causeRow
	EndErrorCauses []causeRow
	ErrorCauses    []causeRow

	P50, P95, P99, Max string
	HasHistogram       bool

	Replicas      []replicaRow
	ReplicaTokens []string // "sp-1:410", "sp-2:395✝"
	Imbalance     string
	HasTimeline   bool
	Faults        []faultRow

	Notes []string
	Logs  []logLink
}

type causeRow struct {
	Cause string
	N     int
	Pct   string // of the total the table is about
}

type replicaRow struct {
	ID            string
	Requests, ACS int
	Share         string
	Fault         string
}

type faultRow struct{ Label, Kind, Target, At string }

type logLink struct {
	Name, Path string
	// Href is Path as a relative URL, or empty when Path is not relative
	// (the page links nothing outside the run directory).
	Href string
}

// chartData is what the page's script draws from.
type chartData struct {
	// Causes are every failure cause in the run, most frequent first, so
	// each cause keeps one colour across charts.
	Causes    []string      `json:"causes"`
	Scenarios []chartSeries `json:"scenarios"`
}

// chartSeries is one scenario that ran.
type chartSeries struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Tried     int       `json:"tried"`
	Succeeded int       `json:"succeeded"`
	Failed    []count   `json:"failed"`
	BucketsMS []float64 `json:"buckets_ms"`
	Counts    []int     `json:"counts"`
	// BucketSeconds is the timeline's bucket; Series its counts by replica.
	BucketSeconds float64      `json:"bucket_s"`
	Series        []loadSeries `json:"series"`
	Faults        []faultMark  `json:"faults"`
}

type loadSeries struct {
	Replica string `json:"replica"`
	Fault   string `json:"fault,omitempty"`
	Counts  []int  `json:"counts"`
}

type faultMark struct {
	AtSeconds float64 `json:"at_s"`
	Label     string  `json:"label"`
}

func newPage(run *results.Run) page {
	p := page{
		Title: "samllab run",
		Run: runView{
			Version:  run.Version,
			Started:  when(run.Started),
			Finished: when(run.Finished),
			Target:   run.Target,
			Dir:      run.Dir,
		},
		Data: chartData{Causes: []string{}, Scenarios: []chartSeries{}},
	}
	if !run.Started.IsZero() {
		p.Title += " " + run.Started.Format("2006-01-02 15:04")
		p.Run.Heading = p.Run.Started
		if run.Finished.After(run.Started) {
			p.Run.Duration = duration(results.Duration(run.Finished.Sub(run.Started)))
		}
	}
	keys := make([]string, 0, len(run.Host))
	for k := range run.Host {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p.Run.Host = append(p.Run.Host, keyValue{k, run.Host[k]})
	}

	p.Matrix = newMatrixView(run)
	all := map[string]int{}
	for i, s := range run.Scenarios {
		v := newScenarioView(i, s)
		p.Scenarios = append(p.Scenarios, v)
		if s.Skipped != "" {
			p.Run.Skipped++
			continue
		}
		p.Run.Ran++
		for c, n := range s.Logins.Failed {
			all[c] += n
		}
		p.Data.Scenarios = append(p.Data.Scenarios, newChartSeries(v.ID, s))
	}
	for _, c := range byCause(all) {
		p.Data.Causes = append(p.Data.Causes, c.Cause)
	}
	return p
}

func newScenarioView(i int, s results.Scenario) scenarioView {
	l := s.Logins
	v := scenarioView{
		ID:          fmt.Sprintf("s%d", i+1),
		Name:        s.Name,
		Description: s.Description,
		Strategy:    s.Strategy,
		Topology:    s.Topology,
		Expect:      s.Expect,
		Skipped:     s.Skipped,
		Load:        loadText(s.Load),
		Started:     when(s.Started),
		Duration:    duration(s.Duration),
		Notes:       s.Notes,
		Logs:        logLinks(s.Logs),
		Error:       s.Error,
		ErrorHead:   firstLine(s.Error),
	}
	if c := s.Chromium; c != nil {
		v.Chromium, v.ChromiumDiffs, v.ChromiumGrade = chromiumText(c), c.Disagreements, "good"
		if c.Agreed < c.Logins {
			v.ChromiumGrade = "poor"
		}
	}
	if s.Skipped != "" {
		return v
	}
	v.Tried, v.Succeeded, v.Failed, v.Crossed = l.Tried, l.Succeeded, l.FailedTotal(), l.Crossed
	v.SuccessPct = percent(l.Succeeded, l.Tried)
	v.CrossedPct = percent(l.Crossed, l.Tried)
	switch r := l.SuccessRate(); {
	case l.Tried == 0:
		v.Grade = "none"
	case r == 1:
		v.Grade = "good"
	case r >= 0.9:
		v.Grade = "fair"
	default:
		v.Grade = "poor"
	}
	for _, c := range byCause(l.Failed) {
		v.Causes = append(v.Causes, causeRow{c.Cause, c.N, percent(c.N, l.Tried)})
	}

	v.Sessions = s.Sessions
	v.HeldPct = percent(s.Sessions.Held, s.Sessions.Checked)
	v.LostCell = lost(s.Sessions)
	v.EndLostCell = endLost(s.Sessions)
	v.SurvivedPct = percent(s.Sessions.Survived, s.Sessions.Revisited)
	for _, c := range byCause(s.Sessions.RevisitLostBy) {
		v.EndLostCauses = append(v.EndLostCauses, causeRow{c.Cause, c.N, percent(c.N, s.Sessions.Revisited)})
	}
	for _, c := range byCause(s.Sessions.RevisitErrorsBy) {
		v.EndErrorCauses = append(v.EndErrorCauses, causeRow{c.Cause, c.N, percent(c.N, s.Sessions.Revisited)})
	}
	for _, c := range byCause(s.Sessions.ErrorsBy) {
		v.ErrorCauses = append(v.ErrorCauses, causeRow{c.Cause, c.N, percent(c.N, s.Sessions.Checked)})
	}
	for _, c := range byCause(s.Sessions.LostBy) {
		v.LostCauses = append(v.LostCauses, causeRow{c.Cause, c.N, percent(c.N, s.Sessions.Checked)})
	}

	lat := s.Latency
	v.P50, v.P95, v.P99, v.Max = millis(lat.P50, l.Succeeded), millis(lat.P95, l.Succeeded),
		millis(lat.P99, l.Succeeded), millis(lat.Max, l.Succeeded)
	v.HasHistogram = histogramOK(lat)

	total := 0
	for _, r := range s.Replicas {
		total += r.Requests
	}
	for _, r := range s.Replicas {
		v.Replicas = append(v.Replicas, replicaRow{r.ID, r.Requests, r.ACS, percent(r.Requests, total), r.Fault})
	}
	v.ReplicaTokens = replicaTokens(s.Replicas)
	v.Imbalance = imbalance(s.Imbalance)
	v.HasTimeline = len(s.Timeline.Series) > 0 && s.Timeline.Bucket > 0
	for _, f := range s.Faults {
		v.Faults = append(v.Faults, faultRow{faultLabel(f), f.Kind, f.Target, duration(f.At)})
	}
	return v
}

// histogramOK says whether lat holds a histogram the page can draw.
func histogramOK(lat results.Latency) bool {
	return len(lat.Buckets) > 0 && len(lat.Counts) == len(lat.Buckets)+1
}

func newChartSeries(id string, s results.Scenario) chartSeries {
	c := chartSeries{
		ID:        id,
		Name:      s.Name,
		Tried:     s.Logins.Tried,
		Succeeded: s.Logins.Succeeded,
		Failed:    byCause(s.Logins.Failed),
		BucketsMS: []float64{},
		Counts:    []int{},
		Series:    []loadSeries{},
		Faults:    []faultMark{},
	}
	if histogramOK(s.Latency) {
		c.BucketsMS, c.Counts = s.Latency.Buckets, s.Latency.Counts
	}
	if s.Timeline.Bucket > 0 {
		c.BucketSeconds = s.Timeline.Bucket.Seconds()
		// Replicas in the scenario's order, then any the timeline has
		// that the replica list lacks, by name.
		fault := map[string]string{}
		var ids []string
		for _, r := range s.Replicas {
			if _, ok := s.Timeline.Series[r.ID]; ok {
				ids = append(ids, r.ID)
			}
			fault[r.ID] = r.Fault
		}
		var extra []string
		for id := range s.Timeline.Series {
			if _, ok := fault[id]; !ok {
				extra = append(extra, id)
			}
		}
		slices.Sort(extra)
		for _, id := range append(ids, extra...) {
			c.Series = append(c.Series, loadSeries{id, fault[id], s.Timeline.Series[id]})
		}
	}
	for _, f := range s.Faults {
		c.Faults = append(c.Faults, faultMark{f.At.Seconds(), faultLabel(f)})
	}
	return c
}

func loadText(l results.Load) string {
	if l.Logins == 0 {
		return ""
	}
	s := fmt.Sprintf("%d logins, %d at a time", l.Logins, max(l.Concurrency, 1))
	if l.ThinkTime > 0 {
		s += ", " + duration(l.ThinkTime) + " think time at the IdP"
	}
	switch l.FollowUps {
	case 0:
	case 1:
		s += ", 1 follow-up request"
	default:
		s += fmt.Sprintf(", %d follow-up requests", l.FollowUps)
	}
	return s
}

// logLinks lists a scenario's logs by name, linking those whose path is
// relative to the run directory.
func logLinks(logs map[string]string) []logLink {
	names := make([]string, 0, len(logs))
	for n := range logs {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []logLink
	for _, n := range names {
		out = append(out, logLink{Name: n, Path: logs[n], Href: relativeHref(logs[n])})
	}
	return out
}

// relativeHref is path as a relative URL, or "" when path is absolute, has
// a scheme or a host, or climbs out of the run directory.
func relativeHref(path string) string {
	p := strings.ReplaceAll(path, `\`, "/")
	if p == "" || strings.HasPrefix(p, "/") || p == ".." || strings.HasPrefix(p, "../") {
		return ""
	}
	if u, err := url.Parse(p); err != nil || u.Scheme != "" || u.Host != "" {
		return ""
	}
	return (&url.URL{Path: p}).String()
}

// matrixView is the verdict matrix as the page shows it: each entry links
// to its scenario's section.
type matrixView struct {
	Columns []string
	Rows    []matrixRowView
}

type matrixRowView struct {
	Strategy, Worst string
	Cells           [][]matrixEntryView
}

type matrixEntryView struct {
	Scenario, ID, Text, Title, Grade string
}

func newMatrixView(run *results.Run) matrixView {
	m := results.NewMatrix(run)
	ids := map[string]string{}
	for i, s := range run.Scenarios {
		ids[s.Name] = fmt.Sprintf("s%d", i+1)
	}
	v := matrixView{Columns: m.Columns}
	for _, r := range m.Rows {
		rv := matrixRowView{Strategy: r.Strategy, Worst: r.Worst}
		for _, c := range r.Cells {
			var es []matrixEntryView
			// Several scenarios in a cell are told apart by what their
			// names do not share ("lax", "twin"; "outage", "aof-restart").
			common := ""
			if len(c.Entries) > 1 {
				common = c.Entries[0].Scenario
				for _, e := range c.Entries[1:] {
					for !strings.HasPrefix(e.Scenario, common) {
						common = common[:len(common)-1]
					}
				}
			}
			for _, e := range c.Entries {
				title := fmt.Sprintf("%.0f%% of logins succeeded", 100*e.Logins)
				if e.Sessions >= 0 {
					title += fmt.Sprintf(", %.0f%% of sessions survived", 100*e.Sessions)
				}
				text := e.Cell()
				if len(c.Entries) > 1 {
					text = strings.TrimLeft(strings.TrimPrefix(e.Scenario, common), "-/") + " " + text
				}
				es = append(es, matrixEntryView{Scenario: e.Scenario, ID: ids[e.Scenario], Text: text, Title: title, Grade: results.Grade(e.Score())})
			}
			rv.Cells = append(rv.Cells, es)
		}
		v.Rows = append(v.Rows, rv)
	}
	return v
}
