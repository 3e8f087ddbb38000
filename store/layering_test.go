package store_test

import (
	"os/exec"
	"strings"
	"testing"
)

// ourDeps lists the samlha packages that the packages matching pattern
// import, directly or not (themselves excluded).
func ourDeps(t *testing.T, pattern string) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, pattern).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pattern, err)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		for _, d := range f[1:] {
			if strings.HasPrefix(d, "github.com/samlha/samlha/") {
				deps[f[0]] = append(deps[f[0]], d)
			}
		}
	}
	return deps
}

// The direction of imports that DESIGN.md and README promise: the store
// contract and its backends import nothing above them, and the proxy knows
// nothing of the SP or the store.
func TestImportsPointDown(t *testing.T) {
	// The listing itself works: the SP does depend on the store.
	if deps := ourDeps(t, "github.com/samlha/samlha/sp")["github.com/samlha/samlha/sp"]; !strings.Contains(strings.Join(deps, " "), "github.com/samlha/samlha/store") {
		t.Fatalf("go list shows no store among the SP's dependencies (%v): the checks below would pass vacuously", deps)
	}
	for pkg, deps := range ourDeps(t, "github.com/samlha/samlha/store/...") {
		for _, d := range deps {
			if !strings.HasPrefix(d, "github.com/samlha/samlha/store") {
				t.Errorf("%s imports %s: the store layer must not depend on what uses it", pkg, d)
			}
		}
	}
	for _, d := range ourDeps(t, "github.com/samlha/samlha/store")["github.com/samlha/samlha/store"] {
		t.Errorf("the store contract imports %s; it must import nothing of ours", d)
	}
	// The one shared leaf: the RelayState and instance-ID rules, which both
	// the SP and the proxy must read alike. It imports nothing of ours.
	const leaf = "github.com/samlha/samlha/sp/relaystate"
	for _, d := range ourDeps(t, leaf)[leaf] {
		t.Errorf("%s imports %s; it must stay a leaf", leaf, d)
	}
	// The forwarding rules (hop-by-hop headers, trusted peers, the client's
	// address, X-Forwarded-*, identity headers stripped), which the proxy's
	// engines and the SP's gateway must apply alike: a leaf too, which sp
	// may import.
	const fwdLeaf = "github.com/samlha/samlha/stickyproxy/forward"
	for _, d := range ourDeps(t, fwdLeaf)[fwdLeaf] {
		t.Errorf("%s imports %s; it must stay a leaf", fwdLeaf, d)
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", fwdLeaf).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", fwdLeaf, err)
	}
	for _, d := range strings.Fields(string(out)) {
		if d != fwdLeaf && !strings.HasPrefix(d, "golang.org/x/net/") && !strings.HasPrefix(d, "golang.org/x/text/") {
			t.Errorf("%s depends on %s: it may use the standard library and golang.org/x/net only", fwdLeaf, d)
		}
	}
	// The in-place head scanner, shared by stickyproxy's serve loop and
	// the upstream hop: a leaf.
	const headLeaf = "github.com/samlha/samlha/stickyproxy/httphead"
	for _, d := range ourDeps(t, headLeaf)[headLeaf] {
		t.Errorf("%s imports %s; it must stay a leaf", headLeaf, d)
	}
	// The upstream hop (stickyproxy's fast engine, which the gateway
	// uses too) stands on the forwarding rules and the head scanner alone.
	const hop = "github.com/samlha/samlha/stickyproxy/upstream"
	for _, d := range ourDeps(t, hop)[hop] {
		if d != fwdLeaf && d != headLeaf {
			t.Errorf("%s imports %s; of ours it may import only %s and %s", hop, d, fwdLeaf, headLeaf)
		}
	}
	for pkg, deps := range ourDeps(t, "github.com/samlha/samlha/sp/...") {
		for _, d := range deps {
			if strings.HasPrefix(d, "github.com/samlha/samlha/stickyproxy") && d != fwdLeaf && d != hop && d != headLeaf {
				t.Errorf("%s imports %s: of stickyproxy, the SP may import only %s, %s and %s", pkg, d, fwdLeaf, hop, headLeaf)
			}
		}
	}
	for pkg, deps := range ourDeps(t, "github.com/samlha/samlha/stickyproxy/...") {
		for _, d := range deps {
			if !strings.HasPrefix(d, "github.com/samlha/samlha/stickyproxy") && d != leaf {
				t.Errorf("%s imports %s: stickyproxy must not depend on the SP or the store (only on %s)", pkg, d, leaf)
			}
		}
	}
	for pkg, deps := range ourDeps(t, "github.com/samlha/samlha/web") {
		for _, d := range deps {
			t.Errorf("%s imports %s: web imports nothing of ours", pkg, d)
		}
	}
}
