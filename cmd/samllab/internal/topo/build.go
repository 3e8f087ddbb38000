package topo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Binaries are the paths of the programs a topology runs.
type Binaries struct {
	SP, Proxy, IdP string
	// Redis is redis-server, or "" when it is not available.
	Redis string
}

var binaryNames = map[string]string{"samlsp": "./cmd/samlsp", "stickyproxy": "./cmd/stickyproxy", "devidp": "./cmd/devidp"}

// Build compiles samlsp, stickyproxy and devidp from the samlha module that
// contains the working directory into dir.
func Build(ctx context.Context, dir string) (Binaries, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return Binaries{}, fmt.Errorf("cannot run the go command to build the binaries (%v); pass --bin-dir with prebuilt samlsp, stickyproxy and devidp", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return Binaries{}, errors.New("not inside the samlha module: run samllab from the samlha checkout, or pass --bin-dir with prebuilt samlsp, stickyproxy and devidp")
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, pkg := range []string{"./cmd/samlsp", "./cmd/stickyproxy", "./cmd/devidp"} {
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

// Find returns the binaries in dir, checking that each is there, and
// redis-server from PATH if it is installed.
func Find(dir string) (Binaries, error) {
	b := Binaries{
		SP:    filepath.Join(dir, "samlsp"),
		Proxy: filepath.Join(dir, "stickyproxy"),
		IdP:   filepath.Join(dir, "devidp"),
	}
	var missing []string
	for _, p := range []string{b.SP, b.Proxy, b.IdP} {
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("missing or not executable: %s", strings.Join(missing, ", "))
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		b.Redis = p
	}
	return b, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
