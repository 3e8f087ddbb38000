package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/samlha/samlha/cmd/samllab/internal/topo"
)

// testBins are the binaries built once for this package's tests.
var testBins topo.Binaries

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "samllab-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testBins, err = topo.Build(context.Background(), "")
	if err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries for the lab's tests:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	flag.Parse()
	if oldLaxPlusPOST.wanted() {
		oldLaxPlusPOST.begin(dir)
	}
	if tests := sharedRunTests(); len(tests) > 0 {
		sharedRun.begin(dir, tests)
	}
	code := m.Run()
	oldLaxPlusPOST.abandon()
	sharedRun.wait()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newEnv is a lab environment in the test's temporary directory.
func newEnv(t *testing.T) *topo.Env {
	t.Helper()
	env, err := topo.NewEnv(filepath.Join(t.TempDir(), "run"), testBins, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// requireCI fails the test under CI=true and skips it otherwise.
func requireCI(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// The run's flags are checked together; --chromium is bounded (each
// Chromium login starts a browser).
func TestRunFlagBounds(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--chromium", "21"}, "--chromium 21: want 0 to 20"},
		{[]string{"--chromium", "-1"}, "--chromium -1: want 0 to 20"},
		{[]string{"--logins", "0"}, "--logins must be at least 1"},
		{[]string{"--parallel", "0"}, "--parallel 0: want 1 to 8"},
		{[]string{"--parallel", "9"}, "--parallel 9: want 1 to 8"},
	} {
		_, err := parseRunFlags(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
