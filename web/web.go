// Package web holds samlha's HTML templates and static files, embedded in
// the binaries so they run from any directory. It imports nothing of
// samlha's: the SP and the lab parse the templates they need from FS.
package web

import (
	"embed"
	"html/template"
	"io/fs"
)

// FS holds templates/*.html and static/* (static/vendor holds third-party
// files, see its README.md).
//
//go:embed templates static
var FS embed.FS

// Static is the static/ directory, to be served under /static/.
func Static() fs.FS {
	sub, err := fs.Sub(FS, "static")
	if err != nil {
		panic(err) // the directory is embedded above; this cannot fail
	}
	return sub
}

// SPTemplates parses the SP's pages: layout.html with index.html, app.html,
// error.html, logout.html and signedout.html. Execute the page by its file name, e.g.
// "error.html".
func SPTemplates(funcs template.FuncMap) (*template.Template, error) {
	return template.New("sp").Funcs(funcs).ParseFS(FS,
		"templates/layout.html", "templates/index.html", "templates/app.html", "templates/error.html",
		"templates/logout.html", "templates/signedout.html")
}

// ReportTemplate parses the lab's report page, templates/report.html. The
// page is self-contained: it loads nothing from elsewhere, and the caller
// inlines the script it needs (ChartJS) and the run's data. Execute it as
// "report.html".
func ReportTemplate(funcs template.FuncMap) (*template.Template, error) {
	return template.New("report.html").Funcs(funcs).ParseFS(FS, "templates/report.html")
}

// ChartJS is the vendored Chart.js UMD build, static/vendor/chart.umd.min.js
// (version and origin in static/vendor/README.md), for a page that inlines
// it so it opens offline.
func ChartJS() ([]byte, error) {
	return FS.ReadFile("static/vendor/chart.umd.min.js")
}
