package sp

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// README's failure taxonomy names every cause the SP can answer with, with
// its status: the table is what an operator reads when a page says a cause.
func TestREADMETaxonomyListsEveryCause(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, c := range AllCauses {
		row := "| `" + string(c) + "` | "
		i := strings.Index(readme, row)
		if i < 0 {
			t.Errorf("README's failure taxonomy has no row %q", row)
			continue
		}
		status := strings.TrimSpace(strings.SplitN(readme[i+len(row):], "|", 2)[0])
		if want := strconv.Itoa(c.Status()); status != want {
			t.Errorf("README gives %s status %s; the SP answers %s", c, status, want)
		}
	}
}
