package walk

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/samlha/samlha/web"
)

// skipOrFail skips the test, or fails it under CI=true.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format+" (CI runs this test)", args...)
}

// findChromium is Chromium's path, or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// tab is one Chromium tab with what it has seen since the last reset.
type tab struct {
	ctx context.Context
	mu  sync.Mutex
	// reqs by request ID, in order of first sight.
	order []network.RequestID
	reqs  map[network.RequestID]*seen
	// console holds console errors and warnings, exceptions and log
	// entries of level error or warning.
	console []string
}

type seen struct {
	url, method, kind string
	status            int64
	mime              string
	headers           network.Headers
	failed            string // loadingFailed: error text and blocked reason
	postData          string
}

// walkCSP records every securitypolicyviolation on each new document.
const walkCSP = `window.__walkCSP = []; document.addEventListener('securitypolicyviolation',
 e => window.__walkCSP.push(e.violatedDirective + ' ' + e.blockedURI));`

// newBrowser starts a headless Chromium for the test and returns its first
// tab, listening.
func newBrowser(t *testing.T) *tab {
	t.Helper()
	bin := findChromium()
	if bin == "" {
		skipOrFail(t, "no Chromium on PATH (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true), chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1000, 700), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return listen(t, ctx)
}

// newTab opens another tab of the same browser (same cookies).
func (b *tab) newTab(t *testing.T) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	return listen(t, ctx)
}

func listen(t *testing.T, ctx context.Context) *tab {
	t.Helper()
	tb := &tab{ctx: ctx, reqs: map[network.RequestID]*seen{}}
	if err := chromedp.Listen(ctx, tb.event); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	maxPost := int64(1 << 20)
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{MaxPostDataSize: &maxPost}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, runtime.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: walkCSP}); err != nil {
		t.Fatal(err)
	}
	return tb
}

func (b *tab) req(id network.RequestID) *seen {
	s := b.reqs[id]
	if s == nil {
		s = &seen{}
		b.reqs[id] = s
		b.order = append(b.order, id)
	}
	return s
}

// event records; it runs in the tab's event loop and returns at once.
func (b *tab) event(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		if e.RedirectResponse != nil {
			// A redirect keeps the ID: the hop before is a request of its own.
			id := network.RequestID(string(e.RequestID) + "#" + fmt.Sprint(len(b.order)))
			s := b.req(id)
			*s = *b.req(e.RequestID)
			s.status, s.mime, s.headers = e.RedirectResponse.Status, e.RedirectResponse.MimeType, e.RedirectResponse.Headers
		}
		s := b.req(e.RequestID)
		*s = seen{url: e.Request.URL, method: e.Request.Method, kind: string(e.Type)}
		for _, en := range e.Request.PostDataEntries {
			s.postData += string(en.Bytes)
		}
	case *network.EventResponseReceived:
		s := b.req(e.RequestID)
		s.status, s.mime, s.headers = e.Response.Status, e.Response.MimeType, e.Response.Headers
		if s.url == "" {
			s.url = e.Response.URL
		}
	case *network.EventLoadingFailed:
		s := b.req(e.RequestID)
		s.failed = strings.TrimSpace(e.ErrorText + " " + string(e.BlockedReason))
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning || e.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range e.Args {
				parts = append(parts, strings.Trim(string(a.Value), `"`)+a.Description)
			}
			b.console = append(b.console, "console."+string(e.Type)+": "+strings.Join(parts, " "))
		}
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		b.console = append(b.console, "exception: "+msg)
	case *cdplog.EventEntryAdded:
		if e.Entry != nil && (e.Entry.Level == cdplog.EntryLevelError || e.Entry.Level == cdplog.EntryLevelWarning) {
			b.console = append(b.console, "log "+string(e.Entry.Level)+": "+e.Entry.URL+": "+e.Entry.Text)
		}
	}
}

// front brings the tab to the front: a background tab's screenshot and
// clicks wait for a frame that never comes.
func (b *tab) front(t *testing.T) {
	t.Helper()
	if _, err := chromedp.Call(b.ctx, page.BringToFront, cdp.Empty{}); err != nil {
		t.Fatalf("bring the tab to the front: %v", err)
	}
}

// reset forgets what the tab has seen.
func (b *tab) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.order, b.reqs, b.console = nil, map[network.RequestID]*seen{}, nil
}

// requests returns what the tab has seen, in order.
func (b *tab) requests() []seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]seen, 0, len(b.order))
	for _, id := range b.order {
		out = append(out, *b.reqs[id])
	}
	return out
}

func (b *tab) consoleLines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

// stepTimeout bounds each do: a page that never shows what a step waits
// for fails the step, not the whole browser's time.
const stepTimeout = 30 * time.Second

// do runs steps in the tab, failing the test with where the tab is and
// what it shows if they fail or take longer than stepTimeout.
func (b *tab) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	b.front(t)
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 300) : ''`))
		t.Fatalf("%s: %v (at %s, showing %q)", what, err, loc, text)
	}
}

func eval[T any](t *testing.T, b *tab, js string) T {
	t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// want is what a page must be.
type want struct {
	// Name names the page in messages and screenshots.
	Name   string
	Status int
	// Cause is its X-Samlha-Cause ("" for none).
	Cause string
	// Title is the page's title before " · samlha"; H1 its heading
	// ("": the title).
	Title, H1 string
	// Path, if set, is where the page must be (path and query): a page
	// that went on elsewhere by itself fails the navigation check.
	Path string
}

// The style sheet every SP page loads, and the header colour it sets.
const (
	stylePath   = "/saml/static/style.css"
	headerColor = "rgb(29, 35, 48)"
)

var headerRGB = [3]uint8{29, 35, 48}

// looksRight checks the page the tab shows now, loaded since the last
// reset, against w. It returns the failures, each beginning with the name
// of the check that found it: status, cause, title, stylesheet, styled,
// requests, console, csp, navigation, screenshot.
func looksRight(t *testing.T, b *tab, w want) []string {
	t.Helper()
	var fails []string
	fail := func(check, format string, args ...any) {
		fails = append(fails, check+": "+fmt.Sprintf(format, args...))
	}
	loc := eval[string](t, b, `location.href`)
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("location %q: %v", loc, err)
	}
	origin := u.Scheme + "://" + u.Host
	if w.Path != "" && !samePath(u, w.Path) {
		fail("navigation", "the browser is at %s, want %s", loc, w.Path)
	}
	// The page does not move on by itself.
	time.Sleep(300 * time.Millisecond)
	if now := eval[string](t, b, `location.href`); now != loc {
		fail("navigation", "the page went on from %s to %s by itself", loc, now)
	}
	reqs := b.requests()
	var doc *seen
	for i := range reqs {
		if reqs[i].kind == string(network.ResourceTypeDocument) && reqs[i].url == loc {
			doc = &reqs[i]
		}
	}
	if doc == nil {
		fail("status", "no document request for %s seen", loc)
	} else {
		if int(doc.status) != w.Status {
			fail("status", "%s answered %d, want %d", loc, doc.status, w.Status)
		}
		if got := header(doc.headers, "X-Samlha-Cause"); got != w.Cause {
			fail("cause", "X-Samlha-Cause %q, want %q", got, w.Cause)
		}
	}
	title := eval[string](t, b, `document.title`)
	if !strings.HasPrefix(title, w.Title+" · samlha") {
		fail("title", "title %q, want %q · samlha ...", title, w.Title)
	}
	h1 := w.H1
	if h1 == "" {
		h1 = w.Title
	}
	if got := strings.TrimSpace(eval[string](t, b, `(document.querySelector('h1')||{}).textContent||''`)); got != h1 {
		fail("title", "h1 %q, want %q", got, h1)
	}
	// One style sheet, the SP's own, answered and applied.
	sheets := eval[[]string](t, b, `[...document.styleSheets].map(s => s.href || '(inline)').concat(
		[...document.querySelectorAll('link[rel~=stylesheet]')].filter(l => !l.sheet).map(l => 'unloaded ' + l.href))`)
	if len(sheets) != 1 || sheets[0] != origin+stylePath {
		fail("stylesheet", "style sheets %q, want exactly %s", sheets, origin+stylePath)
	}
	var sheetSeen bool
	for _, r := range reqs {
		if r.url == origin+stylePath {
			sheetSeen = true
			if r.status != 200 || r.mime != "text/css" {
				fail("stylesheet", "%s answered %d %s, want 200 text/css", r.url, r.status, r.mime)
			}
		}
	}
	if !sheetSeen && len(sheets) == 1 && sheets[0] == origin+stylePath {
		fail("stylesheet", "no request for %s seen", origin+stylePath)
	}
	if sheetSeen {
		if body, err := get(origin + stylePath); err != nil || !bytes.Equal(body, shippedStyle(t)) {
			fail("stylesheet", "%s is not web/static/style.css (%v)", origin+stylePath, err)
		}
	}
	if bg := eval[string](t, b, `(document.querySelector('header') ? getComputedStyle(document.querySelector('header')).backgroundColor : 'no header')`); bg != headerColor {
		fail("styled", "the header's background is %q, want %s: the style sheet is not applied", bg, headerColor)
	}
	// Every request the page made: its own origin, answered 200 (the
	// document its status), none blocked. Chromium's own favicon request
	// is not the page's.
	for _, r := range reqs {
		if strings.HasSuffix(r.url, "/favicon.ico") {
			continue
		}
		ru, err := url.Parse(r.url)
		switch {
		case err != nil || ru.Scheme+"://"+ru.Host != origin:
			if r.kind != string(network.ResourceTypeDocument) {
				fail("requests", "%s %s goes to another origin than %s", r.kind, r.url, origin)
			}
		case r.failed != "":
			fail("requests", "%s %s failed: %s", r.kind, r.url, r.failed)
		case r.kind != string(network.ResourceTypeDocument) && r.status != 200:
			fail("requests", "%s %s answered %d", r.kind, r.url, r.status)
		}
	}
	// No console error or warning, but Chromium's line for the page's own
	// error status.
	own := regexp.MustCompile(`^log error: ` + regexp.QuoteMeta(loc) + `: Failed to load resource: the server responded with a status of \d+`)
	for _, c := range b.consoleLines() {
		switch {
		case strings.Contains(c, "/favicon.ico"):
		case own.MatchString(c) && w.Status >= 400:
		case strings.Contains(c, "Content Security Policy"):
			fail("csp", "%s", c)
		default:
			fail("console", "%s", c)
		}
	}
	if v := eval[[]string](t, b, `window.__walkCSP || []`); len(v) > 0 {
		fail("csp", "violations: %q", v)
	}
	b.front(t)
	shot, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if dir := os.Getenv("SAMLHA_WALK_SHOTS"); dir != "" {
		name := regexp.MustCompile(`[^A-Za-z0-9._-]+`).ReplaceAllString(t.Name()+"-"+w.Name, "_") + ".png"
		if err := os.WriteFile(filepath.Join(dir, name), shot, 0o644); err != nil {
			t.Logf("keep screenshot: %v", err)
		}
	}
	if msg := screenshotLooks(shot); msg != "" {
		fail("screenshot", "%s", msg)
	}
	return fails
}

// screenshotLooks says what is wrong with a screenshot ("" if nothing): it
// must be a PNG of at least three colours with the header's colour at the
// top left.
func screenshotLooks(shot []byte) string {
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		return "not a PNG: " + err.Error()
	}
	colours := map[[3]uint8]bool{}
	bd := img.Bounds()
	for y := bd.Min.Y; y < bd.Max.Y && len(colours) < 3; y += 3 {
		for x := bd.Min.X; x < bd.Max.X && len(colours) < 3; x += 3 {
			colours[rgb(img, x, y)] = true
		}
	}
	if len(colours) < 3 {
		return fmt.Sprintf("%d colours: a blank page", len(colours))
	}
	if c := rgb(img, bd.Min.X+2, bd.Min.Y+2); c != headerRGB {
		return fmt.Sprintf("top left is %v, want the header's %v", c, headerRGB)
	}
	return ""
}

func rgb(img image.Image, x, y int) [3]uint8 {
	r, g, b, _ := img.At(x, y).RGBA()
	return [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}
}

func header(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

var getClient = &http.Client{Timeout: 10 * time.Second}

func get(u string) ([]byte, error) {
	resp, err := getClient.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %d", u, resp.StatusCode)
	}
	return io.ReadAll(resp.Body)
}

func shippedStyle(t *testing.T) []byte {
	t.Helper()
	b, err := fs.ReadFile(web.Static(), "style.css")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mustLookRight fails the test with every failure of looksRight.
func mustLookRight(t *testing.T, b *tab, w want) {
	t.Helper()
	if fails := looksRight(t, b, w); len(fails) > 0 {
		t.Errorf("page %s does not look right:\n  %s", w.Name, strings.Join(fails, "\n  "))
	}
}
