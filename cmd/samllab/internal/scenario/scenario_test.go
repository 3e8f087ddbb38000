package scenario

import (
	"slices"
	"strings"
	"testing"

	"github.com/samlha/samlha/cmd/samllab/internal/results"
)

func TestMatrixIsComplete(t *testing.T) {
	// The matrix, in its order.
	want := []string{"roundrobin-memory", "sticky-memory", "roundrobin-redis", "roundrobin-stateless", "sticky-memory-kill",
		"roundrobin-redis-kill", "roundrobin-redis-outage", "roundrobin-redis-aof-restart", "roundrobin-redis-failover",
		"sticky-memory-rolling", "roundrobin-redis-rolling", "roundrobin-stateless-rolling", "sticky-memory-scaleout",
		"roundrobin-redis-scaleout", "migrate", "migrate-back", "migrate-stateless", "roundrobin-saml-aware-memory", "sticky-lax-cookie", "sticky-slow-user", "sticky-drain",
		"stateless-key-mismatch", "gateway-roundrobin-redis", "gateway-roundrobin-redis-rolling", "gateway-forward-auth"}
	var got []string
	for _, s := range All() {
		if !slices.Contains(got, s.Name) {
			got = append(got, s.Name)
		}
		if s.Description == "" || s.Expect == "" || s.Strategy == "" || s.Topology() == "" {
			t.Errorf("%s lacks a description, an expectation, a strategy or a topology", s.ID())
		}
		// Every scenario has its cell in the verdict matrix.
		if !slices.Contains(results.MatrixColumns, s.Fault) || !slices.Contains(results.MatrixRows, s.Strategy) {
			t.Errorf("%s: fault %q / strategy %q is not a column / row of the verdict matrix", s.ID(), s.Fault, s.Strategy)
		}
		if s.Spec.Name == "" || s.Spec.Replicas != 3 || !s.Spec.TLS || !s.Spec.CrossSite {
			t.Errorf("%s: spec %+v; every scenario runs 3 replicas over https with the IdP on another site", s.ID(), s.Spec)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("matrix %v, want %v", got, want)
	}
}

func TestSelect(t *testing.T) {
	s, err := Select([]string{"sticky-lax-cookie"})
	if err != nil || len(s) != 2 || s[0].ID() != "sticky-lax-cookie/lax" || s[1].ID() != "sticky-lax-cookie/twin" {
		t.Fatalf("a name selects all its phases: %v %v", s, err)
	}
	s, err = Select([]string{"sticky-lax-cookie/twin", "roundrobin-memory"})
	if err != nil || len(s) != 2 || s[0].ID() != "roundrobin-memory" || s[1].ID() != "sticky-lax-cookie/twin" {
		t.Fatalf("selection keeps matrix order: %v %v", s, err)
	}
	if all, _ := Select(nil); len(all) != len(All()) {
		t.Fatal("no names selects everything")
	}
	_, err = Select([]string{"roundrobin-mongo"})
	if err == nil || !strings.Contains(err.Error(), "roundrobin-mongo") || !strings.Contains(err.Error(), "roundrobin-memory") {
		t.Fatalf("unknown name: %v", err)
	}
}
