package sp_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every fuzz target in the tree is fuzzed by .ci/run, and every target
// .ci/run names exists: a new target cannot be left out, nor a renamed one
// be fuzzed no more while CI still reads green.
func TestCIFuzzesEveryTarget(t *testing.T) {
	t.Parallel()
	root := ".."
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`"(\./[^ "]+) (Fuzz\w+)"`).FindAllStringSubmatch(string(ci), -1) {
		listed[m[1]+" "+m[2]] = true
	}
	if len(listed) == 0 {
		t.Fatal(".ci/run lists no fuzz targets")
	}
	decl := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(f \*testing\.F\)`)
	found := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != root || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		for _, m := range decl.FindAllStringSubmatch(string(src), -1) {
			found["./"+filepath.ToSlash(rel)+" "+m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k := range found {
		if !listed[k] {
			t.Errorf("fuzz target %s is not run by .ci/run", k)
		}
	}
	for k := range listed {
		if !found[k] {
			t.Errorf(".ci/run fuzzes %s, which does not exist", k)
		}
	}
	if t.Failed() {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range found {
				if !yield(k) {
					return
				}
			}
		})
		t.Logf("targets in the tree: %q", keys)
	}
}
