package results

import (
	"fmt"
	"slices"
)

// The verdict matrix: strategies down, faults across, each cell the share
// of logins that succeeded and of sessions that survived.

// MatrixColumns are the faults, in order.
var MatrixColumns = []string{"none", "replica-killed", "drain", "rolling-restart", "scale-out", "store-outage", "store-failover", "lax-cookie", "slow-user", "key-mismatch"}

// MatrixRows are the strategies, in order. A strategy without a scenario
// in the run (the gateway, when its scenarios are not selected) is a row
// of empty cells, so the matrix shows what is not measured. A strategy not listed here goes
// after them.
var MatrixRows = []string{"affinity", "affinity (missing)", "saml-aware (memory)", "shared", "stateless", "gateway", "migration"}

// Matrix is the verdict at a glance.
type Matrix struct {
	Columns []string
	Rows    []MatrixRow
}

// MatrixRow is one strategy.
type MatrixRow struct {
	Strategy string
	Cells    []MatrixCell // one per column
	// Worst is a one-line reading of the row's worst cell ("" if the row
	// has no result).
	Worst string
}

// MatrixCell is one strategy under one fault: the scenarios that measure
// it (usually one; sticky-lax-cookie has two phases).
type MatrixCell struct {
	Entries []MatrixEntry
}

// MatrixEntry is one scenario's numbers in a cell.
type MatrixEntry struct {
	Scenario string
	// Logins and Sessions are shares, 0..1; Sessions is -1 when no
	// session was revisited (no login succeeded, or --revisit=false).
	Logins, Sessions float64
	// Error is set when the scenario failed as an experiment (its
	// numbers are not a verdict).
	Error bool
}

// Score is the entry's worse share.
func (e MatrixEntry) Score() float64 {
	if e.Error {
		return -1
	}
	if e.Sessions < 0 {
		return e.Logins
	}
	return min(e.Logins, e.Sessions)
}

// Grade is good (every login and session), fair (90% or more) or poor.
func Grade(share float64) string {
	switch {
	case share < 0:
		return "none"
	case share >= 0.999:
		return "good"
	case share >= 0.9:
		return "fair"
	default:
		return "poor"
	}
}

// NewMatrix builds the matrix from the scenarios that ran (skipped ones
// leave their cell empty).
func NewMatrix(run *Run) Matrix {
	m := Matrix{Columns: MatrixColumns}
	rows := slices.Clone(MatrixRows)
	for _, s := range run.Scenarios {
		if s.Strategy != "" && !slices.Contains(rows, s.Strategy) {
			rows = append(rows, s.Strategy)
		}
	}
	for _, strategy := range rows {
		r := MatrixRow{Strategy: strategy, Cells: make([]MatrixCell, len(m.Columns))}
		var worst *MatrixEntry
		worstCol := ""
		for _, s := range run.Scenarios {
			col := slices.Index(m.Columns, s.Fault)
			if s.Strategy != strategy || col < 0 || s.Skipped != "" {
				continue
			}
			e := MatrixEntry{Scenario: s.Name, Logins: s.Logins.SuccessRate(), Sessions: -1, Error: s.Error != ""}
			if s.Sessions.Revisited > 0 {
				e.Sessions = s.Sessions.SurvivalRate()
			}
			r.Cells[col].Entries = append(r.Cells[col].Entries, e)
			if worst == nil || e.Score() < worst.Score() {
				worst, worstCol = &e, s.Fault
			}
		}
		if worst != nil {
			r.Worst = reading(*worst, worstCol)
		}
		m.Rows = append(m.Rows, r)
	}
	return m
}

func reading(e MatrixEntry, fault string) string {
	if e.Error {
		return fmt.Sprintf("worst: %s, where the scenario %s did not run as planned (see its error)", fault, e.Scenario)
	}
	sessions := "no session to keep"
	if e.Sessions >= 0 {
		sessions = fmt.Sprintf("%.0f%% of sessions survived", 100*e.Sessions)
	}
	if e.Score() >= 0.999 {
		return fmt.Sprintf("nothing lost under any fault measured (%s included)", fault)
	}
	return fmt.Sprintf("worst: %s (%s): %.0f%% of logins succeeded, %s", fault, e.Scenario, 100*e.Logins, sessions)
}

// Cell renders an entry as "L% / S%" (logins / sessions), "err" for a
// failed experiment.
func (e MatrixEntry) Cell() string {
	if e.Error {
		return "err"
	}
	s := "-"
	if e.Sessions >= 0 {
		s = fmt.Sprintf("%.0f", 100*e.Sessions)
	}
	return fmt.Sprintf("%.0f/%s", 100*e.Logins, s)
}
