package topo

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// heldFor reads the hold a replica's store logged (slog's JSON: a duration
// is a number of nanoseconds), the longest if it logged several, and
// ignores other lines.
func TestHeldFor(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sp-1.log")
	log := `{"level":"INFO","msg":"redis-sentinel: following the master the Sentinels name","held":9000000000}
not json at all
{"level":"INFO","msg":"` + heldMsg + `","held":2232000000,"retries":97}
{"level":"INFO","msg":"` + heldMsg + `","held":"350ms"}
`
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	if d, ok := heldFor(path); !ok || d != 2232*time.Millisecond {
		t.Errorf("heldFor = %v, %v; want 2.232s", d, ok)
	}
	if _, ok := heldFor(filepath.Join(t.TempDir(), "none.log")); ok {
		t.Error("heldFor of a missing log found a hold")
	}
	if got := (&Topology{}).FailoverNotes(); got != nil {
		t.Errorf("FailoverNotes with no failover watched = %q, want nil", got)
	}
}
