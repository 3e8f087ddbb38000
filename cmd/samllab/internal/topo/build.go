package topo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/samlha/samlha/store/localproc"
)

// Binaries are the paths of the programs a topology runs.
type Binaries struct {
	SP, Proxy, IdP string
	// DemoApp is the upstream of the gateway topologies (cmd/demoapp), or
	// "" when --bin-dir has none (a binary set from before gateway mode).
	DemoApp string
	// Redis is redis-server, or "" when it is not available.
	Redis string
	// Nginx is nginx (the forward-auth topology's front), or "" when it
	// is not installed.
	Nginx string

	// The binaries' --help texts, to use a flag only where the binary
	// has it (a binary from an older commit may not).
	proxyHelp, spHelp string
}

// ProxyHas reports whether stickyproxy has the flag (e.g. "--admin-token-file").
func (b Binaries) ProxyHas(flag string) bool {
	return strings.Contains(b.proxyHelp, flag+" ") || strings.Contains(b.proxyHelp, flag+"\n")
}

// SPHas reports whether samlsp has the flag.
func (b Binaries) SPHas(flag string) bool {
	return strings.Contains(b.spHelp, flag+" ") || strings.Contains(b.spHelp, flag+"\n")
}

func helpText(path string) string {
	cmd := exec.Command(path, "--help")
	cmd.Env = childEnv()
	out, _ := cmd.CombinedOutput() // --help may exit non-zero; the text is what counts
	return string(out)
}

// childEnv is the lab's environment without samlha's SAMLHA_* variables,
// which would otherwise configure every child behind the lab's back.
func childEnv() []string { return localproc.EnvWithout("SAMLHA_") }

// Build compiles samlsp, stickyproxy, devidp and demoapp from the samlha module that
// contains the working directory into dir; with dir "", into a directory of
// the user's cache kept for that checkout (BinCache), where the go command
// leaves a binary that is up to date as it is instead of linking it again.
func Build(ctx context.Context, dir string) (Binaries, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return Binaries{}, fmt.Errorf("cannot run the go command to build the binaries (%v); pass --bin-dir with prebuilt samlsp, stickyproxy, devidp and demoapp", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return Binaries{}, errors.New("not inside the samlha module: run samllab from the samlha checkout, or pass --bin-dir with prebuilt samlsp, stickyproxy, devidp and demoapp")
	}
	if dir == "" {
		if dir, err = BinCache(filepath.Dir(gomod)); err != nil {
			return Binaries{}, err
		}
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, pkg := range []string{"./cmd/samlsp", "./cmd/stickyproxy", "./cmd/devidp", "./cmd/demoapp"} {
		args = append(args, pkg)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = filepath.Dir(gomod)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return Binaries{}, fmt.Errorf("go build: %v\n%s", err, stderr.String())
	}
	return Find(dir)
}

// BinCache is the directory Build keeps the binaries of the checkout at
// moduleDir in: linking the four binaries again took 4 s of every lab run
// on an idle 2-core machine and 15 s on a busy one, where the go command's
// check that they are up to date takes half a second. One directory per
// checkout, so that two checkouts do not rebuild each other's binaries
// in turn.
func BinCache(moduleDir string) (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the lab's binaries (%v); pass --bin-dir with prebuilt samlsp, stickyproxy, devidp and demoapp", err)
	}
	sum := sha256.Sum256([]byte(moduleDir))
	return filepath.Join(base, "samllab", "bin", hex.EncodeToString(sum[:8])), nil
}

// Find returns the binaries in dir, checking that samlsp, stickyproxy and
// devidp are there; demoapp if it is there (the gateway scenarios need
// it); and redis-server and nginx if they are installed.
func Find(dir string) (Binaries, error) {
	b := Binaries{
		SP:    filepath.Join(dir, "samlsp"),
		Proxy: filepath.Join(dir, "stickyproxy"),
		IdP:   filepath.Join(dir, "devidp"),
	}
	var missing []string
	for _, p := range []string{b.SP, b.Proxy, b.IdP} {
		if !executable(p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("missing or not executable: %s", strings.Join(missing, ", "))
	}
	if p := filepath.Join(dir, "demoapp"); executable(p) {
		b.DemoApp = p
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		b.Redis = p
	}
	b.Nginx = FindTool("nginx")
	b.proxyHelp = helpText(b.Proxy)
	b.spHelp = helpText(b.SP)
	return b, nil
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// FindTool returns the path of an installed tool, looking in the sbin
// directories too (Debian puts nginx in /usr/sbin, which a non-root PATH
// lacks), or "".
func FindTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); executable(p) {
			return p
		}
	}
	return ""
}
