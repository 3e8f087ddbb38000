package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
)

// repoRoot is the module root, relative to this package's directory (where
// go test runs).
const repoRoot = ".."

// inCI reports whether the test runs in CI, where a missing tool is a failure
// rather than a reason to skip.
func inCI() bool { return os.Getenv("CI") == "true" }

// skipOrFail skips outside CI and fails inside it, with the same reason.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("%s (CI=true: this must not be skipped)", msg)
	}
	t.Skip(msg)
}

// flagSpec is one flag as a binary's --help lists it.
type flagSpec struct {
	Name string // without dashes
	Env  string // its environment twin
	Bool bool   // takes no value on the command line
}

// helpSpec is what one program (or subcommand) accepts, read from its --help.
type helpSpec struct {
	Program   string // e.g. "samlsp" or "samlsp keygen"
	Flags     map[string]flagSpec
	ByEnv     map[string]flagSpec
	EnvPrefix string // e.g. "SAMLHA" or "SAMLHA_IDP": twin = prefix + "_" + FLAG_NAME
}

func (h *helpSpec) flagNames() string {
	names := make([]string, 0, len(h.Flags))
	for n := range h.Flags {
		names = append(names, "--"+n)
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

var (
	flagLineRE = regexp.MustCompile(`^  --([A-Za-z0-9][A-Za-z0-9._-]*)(?: (\S+))?\s*$`)
	envLineRE  = regexp.MustCompile(`^\s+\$([A-Z][A-Z0-9_]*)\b`)
)

// parseHelp reads flags and their environment twins from --help output: every
// flag line "  --name [type]" (indented by two spaces; examples in the summary
// are indented further) is followed by a line "      $ENV_NAME ...". A
// flag line without a type word is a boolean flag (Go's flag package prints
// no type for those).
func parseHelp(program, out string) (*helpSpec, error) {
	h := &helpSpec{Program: program, Flags: map[string]flagSpec{}, ByEnv: map[string]flagSpec{}}
	lines := strings.Split(out, "\n")
	for i, line := range lines {
		m := flagLineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if i+1 >= len(lines) {
			return nil, fmt.Errorf("%s --help: flag --%s has no environment line after it", program, m[1])
		}
		e := envLineRE.FindStringSubmatch(lines[i+1])
		if e == nil {
			return nil, fmt.Errorf("%s --help: flag --%s is not followed by its $ENV twin (got %q)", program, m[1], lines[i+1])
		}
		f := flagSpec{Name: m[1], Env: e[1], Bool: m[2] == ""}
		h.Flags[f.Name] = f
		h.ByEnv[f.Env] = f
		suffix := "_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if !strings.HasSuffix(f.Env, suffix) {
			return nil, fmt.Errorf("%s --help: twin $%s of --%s does not end in %s", program, f.Env, f.Name, suffix)
		}
		prefix := strings.TrimSuffix(f.Env, suffix)
		if h.EnvPrefix == "" {
			h.EnvPrefix = prefix
		} else if h.EnvPrefix != prefix {
			return nil, fmt.Errorf("%s --help: twins use two prefixes, %s and %s", program, h.EnvPrefix, prefix)
		}
	}
	if len(h.Flags) == 0 {
		return nil, fmt.Errorf("%s --help lists no flags; output:\n%s", program, out)
	}
	return h, nil
}

// binaries builds the project's programs on demand, once per test binary.
type binaries struct {
	mu    sync.Mutex
	dir   string
	built map[string]error     // binary name -> build error
	help  map[string]*helpSpec // program (with subcommand) -> spec
	herr  map[string]error
}

var bins = &binaries{built: map[string]error{}, help: map[string]*helpSpec{}, herr: map[string]error{}}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// path builds the binary whose main package is pkg (e.g. "./cmd/samlsp") and
// returns its path.
func (b *binaries) path(t *testing.T, name, pkg string) string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dir == "" {
		dir, err := os.MkdirTemp("", "samlha-deploy-bin-")
		if err != nil {
			t.Fatal(err)
		}
		b.dir = dir
	}
	out := filepath.Join(b.dir, name)
	err, done := b.built[name]
	if !done {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = repoRoot
		if msg, e := cmd.CombinedOutput(); e != nil {
			err = fmt.Errorf("go build %s: %v\n%s", pkg, e, msg)
		}
		b.built[name] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// helpFor returns what program accepts (sub: a subcommand such as "keygen",
// or ""), built from pkg and read from its --help.
func (b *binaries) helpFor(t *testing.T, name, pkg, sub string) *helpSpec {
	t.Helper()
	exe := b.path(t, name, pkg)
	program := strings.TrimSpace(name + " " + sub)
	b.mu.Lock()
	defer b.mu.Unlock()
	if h, ok := b.help[program]; ok {
		return h
	}
	if err, ok := b.herr[program]; ok {
		t.Fatal(err)
	}
	args := []string{"--help"}
	if sub != "" {
		args = []string{sub, "--help"}
	}
	// --help prints to stderr and exits 0 or 2 depending on the program;
	// the text is what matters.
	cmd := exec.Command(exe, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	out, _ := cmd.CombinedOutput()
	h, err := parseHelp(program, string(out))
	if err != nil {
		b.herr[program] = err
		t.Fatal(err)
	}
	b.help[program] = h
	return h
}

func TestParseHelp(t *testing.T) {
	t.Parallel()
	const out = `prog: does things

Example:
  prog --target a=http://x \
       --saml-aware

Flags (each can also be set by the environment variable shown; the command line wins):
  --admin-listen address
      $P_X_ADMIN_LISTEN  (default 127.0.0.1:8090)
      admin API
  --saml-aware
      $P_X_SAML_AWARE  (default false)
      route by RelayState
  --target name=URL
      $P_X_TARGET
      a target
`
	h, err := parseHelp("prog", out)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]flagSpec{
		"admin-listen": {Name: "admin-listen", Env: "P_X_ADMIN_LISTEN"},
		"saml-aware":   {Name: "saml-aware", Env: "P_X_SAML_AWARE", Bool: true},
		"target":       {Name: "target", Env: "P_X_TARGET"},
	}
	if fmt.Sprint(h.Flags) != fmt.Sprint(want) {
		t.Errorf("flags = %v, want %v", h.Flags, want)
	}
	if h.EnvPrefix != "P_X" {
		t.Errorf("prefix = %q, want P_X", h.EnvPrefix)
	}
	for _, bad := range []string{
		"  --listen string\n      listens\n",
		"  --listen string\n      $P_LISTEN\n  --store string\n      $Q_STORE\n",
		"  --listen string\n      $P_LISTENER\n",
		"no flags here\n",
	} {
		if _, err := parseHelp("prog", bad); err == nil {
			t.Errorf("parseHelp(%q) accepted it", bad)
		}
	}
}
