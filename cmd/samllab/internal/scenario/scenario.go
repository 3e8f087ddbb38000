// Package scenario is the lab's matrix: each scenario is a topology, a
// load and the faults to inject, with what it is meant to show.
package scenario

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/samlha/samlha/cmd/samllab/internal/topo"
)

// Scenario is one row of the matrix.
type Scenario struct {
	// Name selects the scenario (--scenarios); Phase, if set, names one
	// of several runs of it ("sticky-lax-cookie/lax").
	Name, Phase string
	Description string
	Strategy    string // affinity, shared or stateless
	Expect      string
	Spec        topo.Spec
	// Faults are planned against the running topology.
	Faults func(t *topo.Topology) []FaultPlan
	// NeedsPrivateRedis: the scenario stops and starts Redis, so an
	// external --redis-url will not do.
	NeedsPrivateRedis bool
	// Pace, if set, is the least time a simulated user takes (see
	// load.Options.Pace): it keeps users arriving at a steady rate while
	// logins fail fast, so an outage lasts long enough to see, and so
	// does the recovery after it.
	Pace time.Duration
}

// FaultPlan is a fault to inject once a fraction of the logins is done.
type FaultPlan struct {
	Kind, Target string
	After        float64
	Do           func(ctx context.Context) error
}

// ID is Name or Name/Phase.
func (s Scenario) ID() string {
	if s.Phase == "" {
		return s.Name
	}
	return s.Name + "/" + s.Phase
}

// NeedsRedis reports whether the scenario keeps state in Redis.
func (s Scenario) NeedsRedis() bool { return s.Spec.Store == "redis" }

// Topology describes the scenario's topology in words.
func (s Scenario) Topology() string {
	sp := s.Spec
	proxy := "round robin (no stickiness)"
	if sp.Stickiness == "duration" {
		proxy = "sticky (duration cookie, SameSite=" + strings.ToLower(nonEmpty(sp.CookieSameSite, "lax"))
		if sp.Twin {
			proxy += ", with the SameSite=None twin"
		}
		proxy += ")"
	}
	if sp.SAMLAware {
		proxy += ", SAML-aware"
	}
	keys := "one shared SP key"
	if sp.DistinctKeys {
		keys = "a different SP key per replica"
	}
	t := fmt.Sprintf("%d x samlsp (store %s, %s) behind stickyproxy, %s", max(sp.Replicas, 3), sp.Store, keys, proxy)
	if sp.TLS {
		t += "; https with the lab's CA"
	}
	if sp.CrossSite {
		t += "; IdP on another site"
	}
	return t
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// base is the production-like shape every scenario shares: three replicas,
// https at the proxy, and the IdP on another site, so that SameSite
// applies to the IdP's POST to the ACS as it does in the field.
func base(name, store string) topo.Spec {
	return topo.Spec{Name: name, Replicas: 3, Store: store, TLS: true, CrossSite: true}
}

func sticky(s topo.Spec, twin bool) topo.Spec {
	s.Stickiness = "duration"
	s.CookieSameSite = "lax"
	s.Twin = twin
	return s
}

func kill(id string, after float64) func(t *topo.Topology) []FaultPlan {
	return func(t *topo.Topology) []FaultPlan {
		return []FaultPlan{{Kind: "kill", Target: id, After: after, Do: func(context.Context) error { return t.KillReplica(id) }}}
	}
}

// All is the default matrix, in order.
func All() []Scenario {
	return []Scenario{
		{
			Name: "roundrobin-memory", Strategy: "affinity (missing)",
			Description: "The failure from the field: per-replica memory behind a balancer without stickiness.",
			Expect:      "Logins whose ACS POST reaches another replica than the one that began them fail with state-not-found-cross-instance; with 3 replicas that is most of them.",
			Spec:        base("roundrobin-memory", "memory"),
		},
		{
			Name: "sticky-memory", Strategy: "affinity",
			Description: "The ALB fix: the proxy pins each browser to a replica with a duration cookie (AWSALB) and its SameSite=None twin (AWSALBCORS), as ALB does over https.",
			Expect:      "Every login succeeds and every session holds.",
			Spec:        sticky(base("sticky-memory", "memory"), true),
		},
		{
			Name: "roundrobin-redis", Strategy: "shared",
			Description: "Shared state: every replica keeps login state in one Redis, behind plain round robin.",
			Expect:      "Every login succeeds, whichever replica the ACS POST reaches; load spreads evenly.",
			Spec:        base("roundrobin-redis", "redis"),
		},
		{
			Name: "roundrobin-stateless", Strategy: "stateless",
			Description: "crewjam's signed cookies, one key shared by every replica, behind plain round robin.",
			Expect:      "Every login succeeds.",
			Spec:        base("roundrobin-stateless", "stateless"),
		},
		{
			Name: "sticky-memory-kill", Strategy: "affinity",
			Description: "The ALB fix, and replica sp-2 killed (SIGKILL) a third of the way through.",
			Expect:      "Users pinned to sp-2 lose their logins in flight (cross-instance) and their sessions; the proxy re-pins them.",
			Spec:        sticky(base("sticky-memory-kill", "memory"), true),
			Faults:      kill("sp-2", 1.0/3),
		},
		{
			Name: "roundrobin-redis-kill", Strategy: "shared",
			Description: "Shared state, and replica sp-2 killed (SIGKILL) a third of the way through.",
			Expect:      "Nothing is lost but the requests sp-2 was serving at the instant it died; sessions hold.",
			Spec:        base("roundrobin-redis-kill", "redis"),
			Faults:      kill("sp-2", 1.0/3),
		},
		{
			Name: "roundrobin-redis-outage", Strategy: "shared",
			Description: "Shared state, and Redis stopped a third of the way through, restarted at two thirds.",
			Expect:      "During the outage logins fail cleanly with store-unavailable (503) and readiness fails; within about a second of Redis answering again (go-redis's dial circuit breaker probes once a second) every login succeeds. Sessions made before the outage are gone at the end: this Redis keeps nothing on disk.",
			Pace:        500 * time.Millisecond,
			Spec:        base("roundrobin-redis-outage", "redis"),
			Faults: func(t *topo.Topology) []FaultPlan {
				return []FaultPlan{
					{Kind: "stop", Target: "redis", After: 1.0 / 3, Do: func(context.Context) error { return t.StopRedis() }},
					{Kind: "start", Target: "redis", After: 2.0 / 3, Do: t.StartRedis},
				}
			},
			NeedsPrivateRedis: true,
		},
		{
			Name: "sticky-lax-cookie", Phase: "lax", Strategy: "affinity",
			Description: "The SameSite trap: the affinity cookie is SameSite=Lax only, and the IdP is cross-site, so the browser withholds it from the IdP's POST to the ACS.",
			Expect:      "The ACS POST arrives without affinity and is balanced anew: about two logins in three land on another replica and fail cross-instance.",
			Spec:        sticky(base("sticky-lax-cookie-lax", "memory"), false),
		},
		{
			Name: "sticky-lax-cookie", Phase: "twin", Strategy: "affinity",
			Description: "The same, with the ALB-style SameSite=None; Secure twin cookie (over https).",
			Expect:      "The twin reaches the ACS; every login succeeds.",
			Spec:        sticky(base("sticky-lax-cookie-twin", "memory"), true),
		},
		{
			Name: "sticky-drain", Strategy: "affinity",
			Description: "The ALB fix, and replica sp-2 drained through the proxy's admin API a third of the way through (ALB semantics: no more requests, pinned ones included).",
			Expect:      "sp-2's pinned users are re-pinned elsewhere: their logins in flight fail cross-instance and their sessions are lost, as with a kill, though sp-2 never crashed.",
			Spec:        sticky(base("sticky-drain", "memory"), true),
			Faults: func(t *topo.Topology) []FaultPlan {
				return []FaultPlan{{Kind: "drain", Target: "sp-2", After: 1.0 / 3, Do: func(ctx context.Context) error { return t.DrainReplica(ctx, "sp-2") }}}
			},
		},
		{
			Name: "stateless-key-mismatch", Strategy: "stateless",
			Description: "Stateless mode with a different SP key on each replica, behind round robin.",
			Expect:      "Logins finished by a replica other than the one that began them fail with state-signature-invalid, and the page tells the operator to share --sp-key. Those that come back to their own replica mostly fail too, as response-invalid (decryption): the IdP encrypted the assertion for the one key in the metadata it fetched (sp-1's).",
			Spec: func() topo.Spec {
				s := base("stateless-key-mismatch", "stateless")
				s.DistinctKeys = true
				return s
			}(),
		},
	}
}

// Select returns the scenarios named in names (each a scenario name, which
// selects all its phases, or a name/phase), in matrix order. An empty list
// selects them all.
func Select(names []string) ([]Scenario, error) {
	all := All()
	if len(names) == 0 {
		return all, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = false
	}
	var out []Scenario
	for _, s := range all {
		if _, ok := want[s.Name]; ok {
			want[s.Name] = true
			out = append(out, s)
		} else if _, ok := want[s.ID()]; ok {
			want[s.ID()] = true
			out = append(out, s)
		}
	}
	var unknown []string
	for n, found := range want {
		if !found {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown scenario(s) %s; known: %s", strings.Join(unknown, ", "), strings.Join(Names(), ", "))
	}
	return out, nil
}

// Names lists the selectable names (scenarios and name/phase).
func Names() []string {
	var ns []string
	seen := map[string]bool{}
	for _, s := range All() {
		if !seen[s.Name] {
			ns = append(ns, s.Name)
			seen[s.Name] = true
		}
		if s.Phase != "" {
			ns = append(ns, s.ID())
		}
	}
	return ns
}
