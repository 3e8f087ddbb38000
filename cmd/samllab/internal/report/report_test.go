package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/html"

	"github.com/samlha/samlha/cmd/samllab/internal/results"
	"github.com/samlha/samlha/web"
)

var (
	update  = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")
	htmlOut = flag.String("html", "", "also write the sample's report.html to this `path`, to look at in a browser")
)

// chartJSVersion is the Chart.js vendored in web/static/vendor (see its
// README.md); the page must carry its banner.
const chartJSVersion = "4.6.1"

func sample(t *testing.T) *results.Run {
	t.Helper()
	run, err := results.Read(filepath.Join("testdata", "sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func TestTableGolden(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	Table(&buf, sample(t))
	golden := filepath.Join("testdata", "table.golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), buf.String()); diff != "" {
		t.Errorf("table differs from %s (-want +got), run go test -update if the change is meant:\n%s", golden, diff)
	}
	checkWidth(t, buf.String())
}

// checkWidth fails for a line wider than the table keeps to.
func checkWidth(t *testing.T, out string) {
	t.Helper()
	for i, l := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(l); n > tableWidth {
			t.Errorf("line %d is %d columns wide, more than %d:\n%s", i+1, n, tableWidth, l)
		}
	}
}

// scenario is a scenario that ran, for tests that need only a few fields.
func scenario(name string, failed map[string]int, replicas int) results.Scenario {
	s := results.Scenario{
		Name:   name,
		Logins: results.Logins{Tried: 100, Succeeded: 100, Failed: failed},
	}
	for _, n := range failed {
		s.Logins.Succeeded -= n
	}
	for i := range replicas {
		s.Replicas = append(s.Replicas, results.Replica{ID: fmt.Sprintf("sp-%d", i+1), Requests: 1000 + i})
	}
	return s
}

func TestTableLayout(t *testing.T) {
	t.Parallel()
	manyCauses := map[string]int{}
	for i := range 12 {
		manyCauses[fmt.Sprintf("some-rather-long-cause-name-%02d", i)] = i + 1
	}
	tests := []struct {
		name string
		s    results.Scenario
		// want are lines, or parts of lines, that the table must have.
		want []string
	}{{
		name: "replicas that do not fit go on their own lines",
		s:    scenario("many-replicas", nil, 12),
		want: []string{"\n  requests: sp-1:1000 sp-2:1001 ", "\n" + strings.Repeat(" ", len("  requests: ")) + "sp-11:1010 sp-12:1011\n"},
	}, {
		name: "many causes wrap under the label",
		s:    scenario("many-causes", manyCauses, 3),
		want: []string{
			"\n  failed 78: some-rather-long-cause-name-11:12 some-rather-long-cause-name-10:11 ",
			"\n" + strings.Repeat(" ", len("  failed 78: ")) + "some-rather-long-cause-name-08:9 ",
		},
	}, {
		name: "control characters cannot break lines or reach the terminal",
		s:    scenario("evil\n\x1b[31mred", map[string]int{"cause\twith\ttabs": 1}, 1),
		want: []string{"evil??[31mred", "cause?with?tabs:1"},
	}, {
		name: "nothing measured shows dashes, not zeros",
		s:    results.Scenario{Name: "idle"},
		want: []string{"\nidle          0          0  -       -       -       -      -     -     -\n"},
	}, {
		name: "a skipped scenario shows its reason",
		s:    results.Scenario{Name: "needs-redis", Skipped: "no redis-server"},
		want: []string{"needs-redis  skipped: no redis-server"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			Table(&buf, &results.Run{Scenarios: []results.Scenario{tt.s}})
			out := buf.String()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("table lacks %q:\n%s", w, out)
				}
			}
			if strings.ContainsRune(out, '\x1b') || strings.ContainsRune(out, '\t') {
				t.Errorf("table has a control character:\n%q", out)
			}
			checkWidth(t, out)
		})
	}
}

// parse parses a page and fails the test if it is not HTML.
func parse(t *testing.T, page []byte) *html.Node {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("report.html does not parse: %v", err)
	}
	return doc
}

// walk calls f for n and every node under it.
func walk(n *html.Node, f func(*html.Node)) {
	f(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

// visibleText is the page's text outside <script> and <style>.
func visibleText(doc *html.Node) string {
	var b strings.Builder
	var visit func(*html.Node)
	visit = func(n *html.Node) {
		if n.Type == html.ElementNode && (n.Data == "script" || n.Data == "style") {
			return
		}
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
			b.WriteByte(' ')
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			visit(c)
		}
	}
	visit(doc)
	return b.String()
}

// scripts returns the text of each <script> element.
func scripts(doc *html.Node) []string {
	var out []string
	walk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "script" && n.FirstChild != nil {
			out = append(out, n.FirstChild.Data)
		}
	})
	return out
}

var cssURL = regexp.MustCompile(`(?i)(@import|url\s*\()`)

// checkOffline fails for anything in the page that a browser would fetch
// from elsewhere: a src attribute of any kind, an href that is not a
// relative path or a fragment, a CSS import or url().
func checkOffline(t *testing.T, doc *html.Node) {
	t.Helper()
	walk(doc, func(n *html.Node) {
		if n.Type != html.ElementNode {
			return
		}
		for _, a := range n.Attr {
			v := strings.ToLower(strings.TrimSpace(a.Val))
			switch a.Key {
			case "src", "srcset", "poster", "data", "action", "formaction", "background":
				t.Errorf("<%s %s=%q>: the page must load nothing", n.Data, a.Key, a.Val)
			case "href":
				for _, bad := range []string{"http:", "https:", "//", "javascript:", "data:", "file:", "/"} {
					if strings.HasPrefix(v, bad) {
						t.Errorf("<%s href=%q>: the page must link only relative paths", n.Data, a.Val)
					}
				}
			case "style":
				if cssURL.MatchString(a.Val) {
					t.Errorf("<%s style=%q> refers to a URL", n.Data, a.Val)
				}
			}
		}
		switch n.Data {
		case "link", "img", "iframe", "object", "embed", "base":
			t.Errorf("the page has a <%s> element", n.Data)
		case "style":
			if n.FirstChild != nil && cssURL.MatchString(n.FirstChild.Data) {
				t.Errorf("the style sheet imports or refers to a URL")
			}
		}
	})
}

// pageData finds the chart data in the page's own script and decodes it.
func pageData(t *testing.T, doc *html.Node) chartData {
	t.Helper()
	for _, s := range scripts(doc) {
		_, rest, ok := strings.Cut(s, "var data = ")
		if !ok {
			continue
		}
		var d chartData
		if err := json.NewDecoder(strings.NewReader(rest)).Decode(&d); err != nil {
			t.Fatalf("the page's data is not JSON: %v", err)
		}
		return d
	}
	t.Fatal("the page has no data")
	return chartData{}
}

func TestHTML(t *testing.T) {
	t.Parallel()
	run := sample(t)
	var buf bytes.Buffer
	if err := HTML(&buf, run); err != nil {
		t.Fatal(err)
	}
	if *htmlOut != "" {
		if err := os.WriteFile(*htmlOut, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	doc := parse(t, buf.Bytes())
	text := visibleText(doc)

	t.Run("every scenario, cause and log is shown", func(t *testing.T) {
		var want []string
		for _, s := range run.Scenarios {
			want = append(want, s.Name, s.Description, s.Topology, s.Expect, s.Skipped)
			want = append(want, s.Logins.Causes()...)
			want = append(want, results.Logins{Failed: s.Sessions.LostBy}.Causes()...)
			want = append(want, s.Notes...)
			for name := range s.Logs {
				want = append(want, name)
			}
			for _, f := range s.Faults {
				want = append(want, faultLabel(f))
			}
		}
		want = append(want, run.Dir, run.Host["hostname"], run.Host["commit"])
		for _, w := range want {
			if w != "" && !strings.Contains(text, w) {
				t.Errorf("the page's text lacks %q", w)
			}
		}
	})

	t.Run("the verdict matrix comes first, with each row's worst cell", func(t *testing.T) {
		v, sum := strings.Index(text, "The verdict: strategy"), strings.Index(text, "Summary")
		if v < 0 || sum < 0 || v > sum {
			t.Fatalf("the verdict (at %d) does not come before the summary (at %d)", v, sum)
		}
		for _, r := range results.NewMatrix(run).Rows {
			if r.Worst != "" && !strings.Contains(text, r.Worst) {
				t.Errorf("the page lacks the reading of %s: %q", r.Strategy, r.Worst)
			}
		}
		if !strings.Contains(text, "no gateway scenario in this run yet") {
			t.Error("the gateway row's placeholder is missing")
		}
	})

	t.Run("Chart.js is inlined, without its source map", func(t *testing.T) {
		ss := scripts(doc)
		if len(ss) != 2 {
			t.Fatalf("the page has %d scripts, want 2 (Chart.js and the page's own)", len(ss))
		}
		if banner := "Chart.js v" + chartJSVersion; !strings.Contains(ss[0][:200], banner) {
			t.Errorf("the first script does not start with the banner %q:\n%.200s", banner, ss[0])
		}
		vendored, err := web.ChartJS()
		if err != nil {
			t.Fatal(err)
		}
		if m := scriptOpeners.Find(vendored); m != nil {
			t.Errorf("the vendored Chart.js has %q, which inlineScript rewrites: check that the rewrite keeps it working", m)
		}
		if strings.Contains(buf.String(), "sourceMappingURL") {
			t.Error("the page still names Chart.js's source map")
		}
		if !strings.Contains(text, "Chart.js "+chartJSVersion) {
			t.Errorf("the footer does not name Chart.js %s", chartJSVersion)
		}
	})

	t.Run("nothing is fetched from elsewhere", func(t *testing.T) { checkOffline(t, doc) })

	t.Run("log links are relative to the run directory", func(t *testing.T) {
		var hrefs []string
		walk(doc, func(n *html.Node) {
			for _, a := range n.Attr {
				if a.Key == "href" && !strings.HasPrefix(a.Val, "#") {
					hrefs = append(hrefs, a.Val)
				}
			}
		})
		if !containsString(hrefs, "roundrobin-memory/sp-1.log") {
			t.Errorf("no link to roundrobin-memory/sp-1.log among %q", hrefs)
		}
	})

	t.Run("the charts get every scenario that ran", func(t *testing.T) {
		d := pageData(t, doc)
		var names []string
		for _, s := range d.Scenarios {
			names = append(names, s.Name)
		}
		var want []string
		for _, s := range run.Scenarios {
			if s.Skipped == "" {
				want = append(want, s.Name)
			}
		}
		if diff := cmp.Diff(want, names); diff != "" {
			t.Errorf("chart scenarios (-want +got):\n%s", diff)
		}
		wantCauses := []string{"state-not-found-cross-instance", "state-unknown", "transport-error", "binding-cookie-missing"}
		if diff := cmp.Diff(wantCauses, d.Causes); diff != "" {
			t.Errorf("causes, most frequent first (-want +got):\n%s", diff)
		}
		kill := d.Scenarios[4]
		wantKill := chartSeries{
			ID: "s5", Name: "sticky-memory-kill", Tried: 300, Succeeded: 262,
			Failed:        []count{{"state-not-found-cross-instance", 31}, {"transport-error", 7}},
			BucketsMS:     []float64{5, 10, 25, 50, 100, 250, 500, 1000},
			Counts:        []int{0, 1, 15, 168, 70, 6, 2, 0, 0},
			BucketSeconds: 0.5,
			Series:        kill.Series,
			Faults:        []faultMark{{3.2, "kill sp-2"}},
		}
		if diff := cmp.Diff(wantKill, kill); diff != "" {
			t.Errorf("sticky-memory-kill's chart data (-want +got):\n%s", diff)
		}
		var order []string
		for _, r := range kill.Series {
			order = append(order, r.Replica+"/"+r.Fault)
		}
		if diff := cmp.Diff([]string{"sp-1/", "sp-2/killed", "sp-3/"}, order); diff != "" {
			t.Errorf("load series (-want +got):\n%s", diff)
		}
	})
}

func containsString(ss []string, s string) bool {
	for _, v := range ss {
		if v == s {
			return true
		}
	}
	return false
}

// TestHTMLData renders names, causes and paths that try to break out of
// the page's markup or script: they must come out as text and data.
func TestHTMLData(t *testing.T) {
	t.Parallel()
	const (
		name  = `</script><script>alert("name")</script>`
		cause = `"><img src=x onerror=alert(1)>`
		note  = `<u>{{.Title}}</u> {{template "x"}}`
	)
	s := scenario(name, map[string]int{cause: 3}, 2)
	s.Description = note
	s.Notes = []string{note}
	s.Logs = map[string]string{
		"remote": "https://logs.example/sp-1.log",
		"proto":  "//logs.example/sp-1.log",
		"script": "javascript:alert(1)",
		"abs":    "/var/log/sp-1.log",
		"up":     "../elsewhere/sp-1.log",
		"spaced": "a b/sp #1.log",
	}
	s.Timeline = results.Timeline{Bucket: results.Duration(time.Second), Series: map[string][]int{"sp-1": {1, 2}, name: {3}}}
	run := &results.Run{Version: results.Version, Target: "https://sp.example/", Scenarios: []results.Scenario{s}}
	var buf bytes.Buffer
	if err := HTML(&buf, run); err != nil {
		t.Fatal(err)
	}
	doc := parse(t, buf.Bytes())
	checkOffline(t, doc)
	if n := len(scripts(doc)); n != 2 {
		t.Errorf("the page has %d scripts, want 2", n)
	}
	walk(doc, func(n *html.Node) {
		for _, a := range n.Attr {
			if strings.HasPrefix(a.Key, "on") {
				t.Errorf("<%s %s=%q>: data became an attribute", n.Data, a.Key, a.Val)
			}
		}
		if n.Type == html.ElementNode && n.Data == "u" {
			t.Error("a note's markup became an element")
		}
	})
	text := visibleText(doc)
	for _, w := range []string{name, cause, note, "https://logs.example/sp-1.log", "javascript:alert(1)", "https://sp.example/"} {
		if !strings.Contains(text, w) {
			t.Errorf("the page's text lacks %q as text", w)
		}
	}
	if !strings.Contains(buf.String(), `href="a%20b/sp%20%231.log"`) {
		t.Error(`the log "a b/sp #1.log" is not linked as a relative URL`)
	}
	d := pageData(t, doc)
	if d.Scenarios[0].Name != name || d.Causes[0] != cause {
		t.Errorf("the data lost the name or cause: %+v", d)
	}
	var order []string
	for _, r := range d.Scenarios[0].Series {
		order = append(order, r.Replica)
	}
	if diff := cmp.Diff([]string{"sp-1", name}, order); diff != "" {
		t.Errorf("load series: replicas first, then the timeline's others (-want +got):\n%s", diff)
	}
}

// TestNoScenarios renders runs with nothing in them from many goroutines at
// once (run it with -race): no panic, no race, and both outputs say so.
func TestNoScenarios(t *testing.T) {
	t.Parallel()
	runs := map[string]*results.Run{
		"nil":   nil,
		"zero":  {},
		"empty": {Version: results.Version, Started: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Scenarios: []results.Scenario{}},
	}
	sampleRun := sample(t)
	var wg sync.WaitGroup
	for name, run := range runs {
		for range 4 {
			wg.Go(func() {
				var page, table bytes.Buffer
				if err := HTML(&page, run); err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				Table(&table, run)
				if !strings.Contains(page.String(), "no scenarios") {
					t.Errorf("%s: the page does not say there are no scenarios", name)
				}
				if table.String() != "no scenarios\n" {
					t.Errorf("%s: table %q, want %q", name, table.String(), "no scenarios\n")
				}
				doc := parse(t, page.Bytes())
				checkOffline(t, doc)
				if d := pageData(t, doc); d.Scenarios == nil || d.Causes == nil {
					t.Errorf("%s: the page's data has null lists: %+v", name, d)
				}
			})
		}
		// The same template, concurrently, on a full run.
		wg.Go(func() {
			if err := HTML(&bytes.Buffer{}, sampleRun); err != nil {
				t.Error(err)
			}
			Table(&bytes.Buffer{}, sampleRun)
		})
	}
	wg.Wait()
}

func TestRelativeHref(t *testing.T) {
	t.Parallel()
	tests := []struct{ path, want string }{
		{"sp-1.log", "sp-1.log"},
		{"roundrobin-memory/sp-1.log", "roundrobin-memory/sp-1.log"},
		{"a b/c#d?.log", "a%20b/c%23d%3F.log"},
		{`logs\sp-1.log`, "logs/sp-1.log"},
		{"", ""},
		{"/var/log/sp-1.log", ""},
		{"../sp-1.log", ""},
		{"..", ""},
		{"https://example.com/x.log", ""},
		{"//example.com/x.log", ""},
		{"javascript:alert(1)", ""},
		{`C:\logs\sp-1.log`, ""},
	}
	for _, tt := range tests {
		if got := relativeHref(tt.path); got != tt.want {
			t.Errorf("relativeHref(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestFaultLabel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		f    results.Fault
		want string
	}{
		{results.Fault{Kind: "kill-replica", Target: "sp-2"}, "kill sp-2"},
		{results.Fault{Kind: "drain-replica", Target: "sp-3"}, "drain sp-3"},
		{results.Fault{Kind: "stop-redis", Target: "redis"}, "stop redis"},
		{results.Fault{Kind: "restart-proxy", Target: "proxy"}, "restart proxy"},
		{results.Fault{Kind: "skew-clock"}, "skew-clock"},
		{results.Fault{Kind: "partition", Target: "sp-1"}, "partition sp-1"},
	}
	for _, tt := range tests {
		if got := faultLabel(tt.f); got != tt.want {
			t.Errorf("faultLabel(%+v) = %q, want %q", tt.f, got, tt.want)
		}
	}
}

func TestInlineScript(t *testing.T) {
	t.Parallel()
	in := "/*! lib */\nvar s = \"</script><!-- <Script </SCRIPT>\", r = /<\\/script>/i;\n//# sourceMappingURL=lib.js.map\n"
	want := "/*! lib */\nvar s = \"\\x3C/script>\\x3C!-- \\x3CScript \\x3C/SCRIPT>\", r = /<\\/script>/i;\n"
	if got := string(inlineScript([]byte(in))); got != want {
		t.Errorf("inlineScript:\n got %q\nwant %q", got, want)
	}
}
