package results

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	in := &Run{Version: Version, Started: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), Scenarios: []Scenario{{
		Name: "x", Duration: Duration(1500 * time.Millisecond),
		Logins:   Logins{Tried: 3, Succeeded: 1, Failed: map[string]int{"b": 1, "a": 1}},
		Timeline: Timeline{Bucket: Duration(100 * time.Millisecond), Series: map[string][]int{"sp-1": {1, 2}}},
	}}}
	if err := Write(path, in); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if !strings.Contains(string(raw), `"duration": "1.5s"`) {
		t.Errorf("durations should read as strings:\n%s", raw)
	}
	out, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("round trip (-in +out):\n%s", diff)
	}
	if got := out.Scenarios[0].Logins.Causes(); !cmp.Equal(got, []string{"a", "b"}) || out.Scenarios[0].Logins.FailedTotal() != 2 {
		t.Errorf("causes %v", got)
	}
}

func TestReadRefusesOtherVersions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	_ = os.WriteFile(path, []byte(`{"version": 99}`), 0o644)
	if _, err := Read(path); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Fatalf("err = %v", err)
	}
	_ = os.WriteFile(path, []byte(`{"version": 1, "scenarios": [{"duration": "soon"}]}`), 0o644)
	if _, err := Read(path); err == nil {
		t.Fatal("a bad duration was accepted")
	}
}
