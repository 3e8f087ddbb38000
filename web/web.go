// Package web holds samlha's HTML templates and static files, embedded in
// the binaries so they run from any directory. It imports nothing of
// samlha's: the SP and the lab parse the templates they need from FS.
package web

import (
	"embed"
	"html/template"
	"io/fs"
)

// FS holds templates/*.html and static/*.
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

// SPTemplates parses the SP's pages: layout.html with index.html, app.html
// and error.html. Execute the page by its file name, e.g. "error.html".
func SPTemplates(funcs template.FuncMap) (*template.Template, error) {
	return template.New("sp").Funcs(funcs).ParseFS(FS,
		"templates/layout.html", "templates/index.html", "templates/app.html", "templates/error.html")
}
