package walk

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/web"
)

// TestLooksRightCatches serves pages built like the SP's, each with one
// fault, and checks that looksRight catches each by the check that names
// it, and passes the correct page: the checks can fail.
func TestLooksRightCatches(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	other := httptest.NewServer(http.FileServerFS(web.FS))
	t.Cleanup(other.Close)
	const title = "Access denied"
	pageOf := func(head, body string) string {
		return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>` + title + ` · samlha sp-1</title>` + head +
			`</head><body><header><span class="brand">samlha</span><span class="badge">instance <b>sp-1</b></span></header><main><h1 class="error">` +
			title + `</h1><p class="cause">Cause: <code id="cause">forbidden</code></p>` + body + `</main><footer>Served by sp-1.</footer></body></html>`
	}
	sheet := `<link rel="stylesheet" href="` + stylePath + `">`
	type fault struct {
		name, check string
		status      int
		csp, head   string
		body        string
	}
	faults := []fault{
		{name: "correct", status: 403, head: sheet},
		{name: "no-sheet", check: "stylesheet", status: 403},
		{name: "sheet-blocked-by-csp", check: "csp", status: 403, head: sheet, csp: "default-src 'none'; style-src 'none'"},
		{name: "foreign-sheet", check: "stylesheet", status: 403, csp: "default-src 'none'; style-src *",
			head: `<link rel="stylesheet" href="` + other.URL + `/static/style.css">`},
		{name: "console-error", check: "console", status: 403, head: sheet, csp: "default-src 'none'; style-src 'self'; script-src 'unsafe-inline'",
			body: `<script>console.error("walk: broken")</script>`},
		{name: "cross-origin-image", check: "requests", status: 403, head: sheet, csp: "default-src 'none'; style-src 'self'; img-src *",
			body: `<img src="` + other.URL + `/static/nothing.png" alt="">`},
		{name: "not-found", check: "status", status: 404, head: sheet},
		{name: "wrong-status", check: "status", status: 200, head: sheet},
		{name: "blank", check: "screenshot", status: 403},
		{name: "navigates-away", check: "navigation", status: 403, head: sheet + `<meta http-equiv="refresh" content="0; url=/elsewhere">`},
	}
	byName := map[string]fault{}
	mux := http.NewServeMux()
	mux.Handle("GET /saml/static/", http.StripPrefix("/saml", http.FileServerFS(web.FS)))
	mux.HandleFunc("GET /page/{name}", func(w http.ResponseWriter, r *http.Request) {
		f := byName[r.PathValue("name")]
		respond.SetPageHeaders(w.Header())
		if f.csp != "" {
			w.Header().Set("Content-Security-Policy", f.csp)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("X-Samlha-Cause", "forbidden")
		w.WriteHeader(f.status)
		if f.name == "blank" {
			fmt.Fprint(w, `<!DOCTYPE html><html><head><title>`+title+` · samlha sp-1</title></head><body><h1 style="color:#fff">`+title+`</h1></body></html>`)
			return
		}
		fmt.Fprint(w, pageOf(f.head, f.body))
	})
	mux.HandleFunc("GET /elsewhere", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, pageOf(sheet, ""))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	for _, f := range faults {
		byName[f.name] = f
	}
	for _, f := range faults {
		b.reset()
		b.do(t, f.name, chromedp.Navigate(srv.URL+"/page/"+f.name), chromedp.WaitReady(chromedp.CSS("h1")))
		fails := looksRight(t, b, want{Name: f.name, Status: 403, Cause: "forbidden", Title: title, Path: "/page/" + f.name})
		if f.check == "" {
			if len(fails) > 0 {
				t.Errorf("the correct page fails:\n  %s", strings.Join(fails, "\n  "))
			}
			continue
		}
		caught := false
		for _, m := range fails {
			caught = caught || strings.HasPrefix(m, f.check+": ")
		}
		if !caught {
			t.Errorf("fault %s: not caught by check %s (failures: %q)", f.name, f.check, fails)
		} else {
			t.Logf("fault %s caught: %q", f.name, fails)
		}
	}
}
