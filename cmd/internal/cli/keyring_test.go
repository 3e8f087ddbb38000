package cli

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/samlha/samlha/stickyproxy/affinity"
)

func TestKeyRing(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(file, []byte("# rotated in on 2026-11-30\nthe third key from the file\n\n  the fourth key from the file  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var k KeyRing
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	k.Register(fs, "test-key", "usage")
	if err := fs.Parse([]string{"--test-key", "the first key that seals", "--test-key", "the second key that opens", "--test-key-file", file}); err != nil {
		t.Fatal(err)
	}
	var p Problems
	got := k.Keys(&p)
	if p.Err() != nil {
		t.Fatal(p.Err())
	}
	want := []string{"the first key that seals", "the second key that opens", "the third key from the file", "the fourth key from the file"}
	if len(got) != len(want) {
		t.Fatalf("%d keys, want %d", len(got), len(want))
	}
	for i, s := range want {
		if w, _ := affinity.DeriveKey(s); got[i] != w {
			t.Errorf("key %d is not DeriveKey(%q): the order or the format changed", i+1, s)
		}
	}

	var bad KeyRing
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	bad.Register(fs, "test-key", "usage")
	_ = fs.Parse([]string{"--test-key", "short", "--test-key-file", filepath.Join(t.TempDir(), "missing")})
	p = nil
	if keys := bad.Keys(&p); len(keys) != 0 {
		t.Errorf("bad keys returned %d keys", len(keys))
	}
	msg := p.Err().Error()
	for _, want := range []string{"--test-key #1", "--test-key-file"} {
		if !strings.Contains(msg, want) {
			t.Errorf("problems lack %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "short") {
		t.Errorf("a secret is printed: %s", msg)
	}
}
