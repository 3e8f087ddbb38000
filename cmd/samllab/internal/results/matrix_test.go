package results

import (
	"strings"
	"testing"
	"time"
)

// The matrix puts each scenario in its strategy's row and its fault's
// column, keeps the gateway row even when empty, and reads each row's
// worst cell.
func TestMatrix(t *testing.T) {
	run := &Run{Scenarios: []Scenario{
		{Name: "a", Strategy: "affinity", Fault: "none", Logins: Logins{Tried: 10, Succeeded: 10}, Sessions: Sessions{Revisited: 10, Survived: 10}},
		{Name: "b", Strategy: "affinity", Fault: "rolling-restart", Logins: Logins{Tried: 10, Succeeded: 9}, Sessions: Sessions{Revisited: 9, Survived: 3}},
		{Name: "c", Strategy: "shared", Fault: "store-outage", Error: "did not start"},
		{Name: "d", Strategy: "shared", Fault: "none", Skipped: "no redis"},
	}}
	m := NewMatrix(run)
	row := func(name string) MatrixRow {
		for _, r := range m.Rows {
			if r.Strategy == name {
				return r
			}
		}
		t.Fatalf("no row %q", name)
		return MatrixRow{}
	}
	col := func(name string) int {
		for i, c := range m.Columns {
			if c == name {
				return i
			}
		}
		t.Fatalf("no column %q", name)
		return 0
	}
	aff := row("affinity")
	if e := aff.Cells[col("rolling-restart")].Entries; len(e) != 1 || e[0].Cell() != "90/33" || Grade(e[0].Score()) != "poor" {
		t.Errorf("affinity x rolling-restart: %+v", e)
	}
	if !strings.Contains(aff.Worst, "rolling-restart") || !strings.Contains(aff.Worst, "33% of sessions survived") {
		t.Errorf("affinity's worst: %q", aff.Worst)
	}
	sh := row("shared")
	if e := sh.Cells[col("store-outage")].Entries; len(e) != 1 || e[0].Cell() != "err" {
		t.Errorf("a failed scenario's cell: %+v", e)
	}
	if len(sh.Cells[col("none")].Entries) != 0 {
		t.Error("a skipped scenario filled a cell")
	}
	if gw := row("gateway"); gw.Worst != "" {
		t.Errorf("gateway row: %+v", gw)
	}
}

func TestWindowString(t *testing.T) {
	ms := func(n int) Duration { return Duration(time.Duration(n) * time.Millisecond) }
	for _, tc := range []struct {
		w    Window
		want string
	}{
		{Window{Switch: ms(2150), Switched: true, Held: map[string]Duration{"sp-1": ms(2120), "sp-2": ms(2160), "sp-3": ms(2150)}},
			"+switch-master 2.15s after the kill; store operations held 2.12s to 2.16s (3 replicas)"},
		{Window{}, "no +switch-master heard before the run ended"},
	} {
		if got := tc.w.String(); got != tc.want {
			t.Errorf("Window.String() = %q, want %q", got, tc.want)
		}
	}
}
