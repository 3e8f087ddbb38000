// Package samlspbin builds samlsp (./cmd/samlsp of the module under test)
// once per test process, with one SP key pair for every SP the process
// starts, for the tests that run samlsp as a real process. Call Remove
// from TestMain when the tests are done.
package samlspbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/samlha/samlha/sp/keypair"
	"github.com/samlha/samlha/store/localproc"
)

// Binary is the built samlsp and its SP key pair's files.
type Binary struct {
	Path, Key, Cert string
}

var built struct {
	once sync.Once
	dir  string
	bin  Binary
	err  error
}

// Build builds samlsp and writes the key pair, the first time it is
// called in the process; later calls return the same result.
func Build() (Binary, error) {
	built.once.Do(func() { built.bin, built.err = build() })
	return built.bin, built.err
}

func build() (Binary, error) {
	dir, err := os.MkdirTemp("", "samlha-samlsp-")
	if err != nil {
		return Binary{}, err
	}
	built.dir = dir
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return Binary{}, fmt.Errorf("go env GOMOD: %v", err)
	}
	b := Binary{Path: filepath.Join(dir, "samlsp"), Key: filepath.Join(dir, "sp.key"), Cert: filepath.Join(dir, "sp.crt")}
	cmd := exec.Command("go", "build", "-o", b.Path, "./cmd/samlsp")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binary{}, fmt.Errorf("go build ./cmd/samlsp: %v\n%s", err, out)
	}
	k, c, err := keypair.Generate("samlha-test-sp", time.Now())
	if err != nil {
		return Binary{}, err
	}
	return b, keypair.Write(b.Key, b.Cert, k, c)
}

// Remove deletes what Build made.
func Remove() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// Env is this process's environment without samlha's SAMLHA_* variables,
// which would configure samlsp behind the test's back.
func Env() []string { return localproc.EnvWithout("SAMLHA_") }
