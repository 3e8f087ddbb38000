package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/samlha/samlha/cmd/samllab/internal/results"
)

// matrixHeads are the terminal's short names of results.MatrixColumns.
var matrixHeads = map[string]string{"none": "none", "replica-killed": "killed", "drain": "drain", "rolling-restart": "rolling",
	"scale-out": "scaleout", "store-outage": "storeout", "store-failover": "failover", "lax-cookie": "laxcookie",
	"slow-user": "slowuser", "key-mismatch": "keys"}

// matrixTable writes the strategy x fault verdict: per cell, the % of
// logins that succeeded / % of sessions that survived (the worst scenario
// when a cell has several), and each row's worst cell in words.
func matrixTable(w io.Writer, run *results.Run) {
	m := results.NewMatrix(run)
	first := len("STRATEGY")
	for _, r := range m.Rows {
		first = max(first, width(r.Strategy))
	}
	cellW := 9
	var b strings.Builder
	b.WriteString(pad("STRATEGY", first, false))
	for _, c := range m.Columns {
		b.WriteString(" " + pad(matrixHeads[c], cellW, true))
	}
	fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	for _, r := range m.Rows {
		b.Reset()
		b.WriteString(pad(r.Strategy, first, false))
		for _, c := range r.Cells {
			cell := "."
			if len(c.Entries) > 0 {
				worst := c.Entries[0]
				for _, e := range c.Entries[1:] {
					if e.Score() < worst.Score() {
						worst = e
					}
				}
				cell = worst.Cell()
				if len(c.Entries) > 1 {
					cell = "*" + cell
				}
			}
			b.WriteString(" " + pad(cell, cellW, true))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	fmt.Fprintln(w)
	for _, r := range m.Rows {
		switch {
		case r.Worst != "":
			wrap(w, "  "+r.Strategy+": ", strings.Fields(r.Worst), 4)
		case r.Strategy == "gateway":
			wrap(w, "  gateway: ", strings.Fields("no gateway scenario in this run yet (gateway-roundrobin-redis and gateway-forward-auth fill this row)"), 4)
		}
	}
	for _, s := range run.Scenarios {
		if s.Window != nil {
			wrap(w, "  "+matrixHeads[s.Fault]+" window ("+s.Name+"): ", strings.Fields(s.Window.String()), 4)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Cells: % of logins that succeeded / % of sessions that survived to the end (- none to keep). . not measured;")
	fmt.Fprintln(w, "* several scenarios, the worst shown; err: the scenario did not run as planned.")
	fmt.Fprintln(w)
}
