// Package scenario is the lab's matrix: each scenario is a topology, a
// load and the faults to inject, with what it is meant to show.
package scenario

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/samlha/samlha/cmd/samllab/internal/load"
	"github.com/samlha/samlha/cmd/samllab/internal/results"
	"github.com/samlha/samlha/cmd/samllab/internal/topo"
)

// Scenario is one row of the matrix.
type Scenario struct {
	// Name selects the scenario (--scenarios); Phase, if set, names one
	// of several runs of it ("sticky-lax-cookie/lax").
	Name, Phase string
	Description string
	Strategy    string // affinity, shared or stateless
	// Fault is the scenario's column in the verdict matrix (one of
	// results.MatrixColumns).
	Fault  string
	Expect string
	Spec   topo.Spec
	// Faults are planned against the running topology.
	Faults func(t *topo.Topology) []load.Fault
	// Load adjusts the run's load options for this scenario (a slow
	// user's think time, say).
	Load func(o *load.Options)
	// NeedsPrivateRedis: the scenario stops and starts Redis, so an
	// external --redis-url will not do.
	NeedsPrivateRedis bool
	// Observe, if set, adds to the result what the scenario saw beyond
	// the load's records, once the load is over (the failover window).
	Observe func(t *topo.Topology, rs *results.Scenario)
	// Pace, if set, is the least time a simulated user takes (see
	// load.Options.Pace): it keeps users arriving at a steady rate while
	// logins fail fast, so an outage lasts long enough to see, and so
	// does the recovery after it.
	Pace time.Duration
	// Alone, if set, says why the scenario must not share the machine
	// with another (samllab run --parallel runs it with nothing beside
	// it): it measures a timing window that CPU contention would stretch.
	Alone string
}

// ID is Name or Name/Phase.
func (s Scenario) ID() string {
	if s.Phase == "" {
		return s.Name
	}
	return s.Name + "/" + s.Phase
}

// NeedsRedis reports whether the scenario keeps state in Redis.
func (s Scenario) NeedsRedis() bool { return s.Spec.Store == "redis" || s.Spec.Handoff }

// Topology describes the scenario's topology in words.
func (s Scenario) Topology() string {
	sp := s.Spec
	switch sp.Gateway {
	case topo.GatewayProxy:
		return fmt.Sprintf("demoapp (no SAML code, --require-jwt) behind %d x samlsp gateways (--upstream, --identity-jwt, store %s) behind stickyproxy, round robin (no stickiness); https with the lab's CA; IdP on another site", max(sp.Replicas, 3), sp.Store)
	case topo.GatewayForwardAuth:
		return fmt.Sprintf("demoapp (no SAML code, --require-jwt) served by nginx (deploy/nginx-forward-auth.conf, auth_request to /saml/auth), round robin over %d x samlsp (store %s, --identity-jwt); https with the lab's CA; IdP on another site", max(sp.Replicas, 3), sp.Store)
	}
	proxy := "round robin (no stickiness)"
	if sp.Stickiness == "duration" {
		proxy = "sticky (duration cookie, SameSite=" + strings.ToLower(nonEmpty(sp.CookieSameSite, "lax"))
		if sp.Twin {
			proxy += ", with the SameSite=None twin"
		}
		proxy += ")"
	}
	if sp.Spare > 0 {
		proxy += fmt.Sprintf("; %d more target(s) down until scaled out", sp.Spare)
	}
	if sp.SAMLAware {
		proxy += ", SAML-aware"
	}
	keys := "one shared SP key"
	if sp.DistinctKeys {
		keys = "a different SP key per replica"
	}
	store := sp.Store
	if sp.Handoff {
		store = "memory, --store-handoff to a Redis"
	}
	t := fmt.Sprintf("%d x samlsp (store %s, %s) behind stickyproxy, %s", max(sp.Replicas, 3), store, keys, proxy)
	if sp.TLS {
		t += "; https with the lab's CA"
	}
	if sp.CrossSite {
		t += "; IdP on another site"
	}
	switch sp.Redis {
	case "aof":
		t += "; Redis with AOF (appendfsync always)"
	case "sentinel":
		t += "; Redis master + replica under one Sentinel"
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

func kill(id string, after float64) func(t *topo.Topology) []load.Fault {
	return func(t *topo.Topology) []load.Fault {
		return []load.Fault{{Kind: "kill", Target: id, After: after, Do: func(context.Context) error { return t.KillReplica(id) }}}
	}
}

// rolling restarts every replica in turn, as a deploy does: SIGTERM, the
// replica drains its requests and exits, comes back on its port, and the
// proxy's health checks decide when it gets traffic again.
func rolling(after float64) func(t *topo.Topology) []load.Fault {
	return func(t *topo.Topology) []load.Fault {
		return []load.Fault{{Kind: "rolling-restart", Target: "every replica", After: after, Do: func(ctx context.Context) error {
			for _, r := range t.Replicas {
				if err := t.RestartReplica(ctx, r.ID); err != nil {
					return err
				}
			}
			return nil
		}}}
	}
}

// migrate moves every replica in turn from memory (with --store-handoff)
// to Redis, as an operator's rolling deploy does, and then turns the
// proxy's stickiness off.
func migrate(after float64) func(t *topo.Topology) []load.Fault {
	return func(t *topo.Topology) []load.Fault {
		return []load.Fault{
			{Kind: "migrate", Target: "every replica, memory to redis", After: after, Do: rollEach(t, t.MigrateReplica)},
			{Kind: "stickiness", Target: "off at stickyproxy (admin API)", After: after, Do: func(ctx context.Context) error { return t.SetStickiness(ctx, false) }},
		}
	}
}

// migrateBack turns the proxy's stickiness on, then moves every replica
// in turn from Redis back to memory with --store-handoff to that Redis.
func migrateBack(after float64) func(t *topo.Topology) []load.Fault {
	return func(t *topo.Topology) []load.Fault {
		return []load.Fault{
			{Kind: "stickiness", Target: "on at stickyproxy (admin API)", After: after, Do: func(ctx context.Context) error { return t.SetStickiness(ctx, true) }},
			{Kind: "migrate", Target: "every replica, redis to memory with --store-handoff", After: after, Do: rollEach(t, t.MigrateReplicaBack)},
		}
	}
}

// migrateStateless moves every replica in turn from stateless (with
// --store-handoff) to Redis with --accept-stateless.
func migrateStateless(after float64) func(t *topo.Topology) []load.Fault {
	return func(t *topo.Topology) []load.Fault {
		return []load.Fault{{Kind: "migrate", Target: "every replica, stateless to redis with --accept-stateless", After: after,
			Do: rollEach(t, t.MigrateStatelessReplica)}}
	}
}

// rollEach moves every replica in turn with move, leaving the replicas
// mixed for migrateStep after each, as in a real roll (memory replicas
// read through to Redis meanwhile).
func rollEach(t *topo.Topology, move func(ctx context.Context, id string) error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		for _, r := range t.Replicas {
			if err := move(ctx, r.ID); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(migrateStep):
			}
		}
		return nil
	}
}

// migrateStep is how long the migrate scenario leaves its replicas mixed
// (some on memory, some on Redis) after each one moves.
const migrateStep = 500 * time.Millisecond

// migratePace keeps users arriving through the roll (about 2.5 s) and
// for a while after it, within about 5 s of load: the matrix must stay
// short.
const migratePace = time.Second

// scaleOut starts the spare sp-4 a third of the way through.
func scaleOut(t *topo.Topology) []load.Fault {
	return []load.Fault{{Kind: "scale-out", Target: "sp-4", After: 1.0 / 3, Do: func(ctx context.Context) error { return t.StartSpare(ctx, "sp-4") }}}
}

func withSpare(s topo.Spec) topo.Spec {
	s.Spare = 1
	return s
}

func gateway(s topo.Spec, mode string) topo.Spec {
	s.Gateway = mode
	return s
}

func withRedis(s topo.Spec, mode string) topo.Spec {
	s.Redis = mode
	return s
}

// rollingPace keeps users arriving through a rolling restart, which takes
// a few seconds per replica.
const rollingPace = 1500 * time.Millisecond

// outagePace keeps users arriving for more than a second after Redis is
// back (the last third of the run), so the recovery is measured: go-redis's
// pools re-probe a dead server about once a second.
const outagePace = 800 * time.Millisecond

// SlowUserThink is the slow-user scenario's think time: even users take
// 20 s, odd ones 3 minutes (on the browser's clock only).
func SlowUserThink(i int) time.Duration {
	if i%2 == 0 {
		return 20 * time.Second
	}
	return 3 * time.Minute
}

// aloneRecovery is why the Redis outage scenarios run alone.
const aloneRecovery = "it measures how soon logins succeed again after Redis restarts (the notes' recovery time, about a second: go-redis's pools re-probe a dead server once a second) and, paced at 800 ms, how many users arrive in the outage: a restart or replicas slowed by another scenario's load would move both"

// aloneRolling is why the scenarios that restart replicas (rolling
// restarts, migrations) run alone. Beside two other scenarios on 2 CPUs,
// sticky-memory-rolling lost 11 of 80 logins as state-unknown where alone
// it loses none, roundrobin-stateless-rolling 6 (idp-metadata-unavailable,
// 502) and migrate-back 3, where alone they lose none.
const aloneRolling = "what it loses depends on the timing of each replica's restart: SIGTERM, up to 2 s of drain, the start, and the proxy's health checks (every 300 ms, a 250 ms timeout, one failure marks a replica down, two successes bring it back) against logins with 250 ms at the IdP's form; another scenario's load slows the restart and the checks and moves that window"

// observeFailover records the failover window KillMasterWatched saw.
func observeFailover(t *topo.Topology, rs *results.Scenario) {
	fw, ok := t.Failover()
	if !ok {
		return
	}
	w := &results.Window{Switch: results.Duration(fw.Switch), Switched: fw.Switched, Held: map[string]results.Duration{}}
	for id, d := range fw.Held {
		w.Held[id] = results.Duration(d)
	}
	rs.Window = w
	rs.Notes = append(rs.Notes, t.FailoverNotes()...)
}

func redisRestart(t *topo.Topology) []load.Fault {
	return []load.Fault{
		{Kind: "stop", Target: "redis", After: 1.0 / 3, Do: func(context.Context) error { return t.StopRedis() }},
		{Kind: "start", Target: "redis", After: 2.0 / 3, Do: t.StartRedis},
	}
}

// All is the default matrix, in order.
func All() []Scenario {
	return []Scenario{
		{
			Name: "roundrobin-memory", Strategy: "affinity (missing)", Fault: "none",
			Description: "The failure from the field: per-replica memory behind a balancer without stickiness.",
			Expect:      "Logins whose ACS POST reaches another replica than the one that began them fail with state-not-found-cross-instance; with 3 replicas that is most of them.",
			Spec:        base("roundrobin-memory", "memory"),
		},
		{
			Name: "sticky-memory", Strategy: "affinity", Fault: "none",
			Description: "The ALB fix: the proxy pins each browser to a replica with a duration cookie (AWSALB) and its SameSite=None twin (AWSALBCORS), as ALB does over https.",
			Expect:      "Every login succeeds and every session holds.",
			Spec:        sticky(base("sticky-memory", "memory"), true),
		},
		{
			Name: "roundrobin-redis", Strategy: "shared", Fault: "none",
			Description: "Shared state: every replica keeps login state in one Redis, behind plain round robin.",
			Expect:      "Every login succeeds, whichever replica the ACS POST reaches; load spreads evenly.",
			Spec:        base("roundrobin-redis", "redis"),
		},
		{
			Name: "roundrobin-stateless", Strategy: "stateless", Fault: "none",
			Description: "crewjam's signed cookies, one key shared by every replica, behind plain round robin.",
			Expect:      "Every login succeeds.",
			Spec:        base("roundrobin-stateless", "stateless"),
		},
		{
			Name: "sticky-memory-kill", Strategy: "affinity", Fault: "replica-killed",
			Description: "The ALB fix, and replica sp-2 killed (SIGKILL) a third of the way through.",
			Expect:      "Users pinned to sp-2 lose their logins in flight (cross-instance) and their sessions; the proxy re-pins them.",
			Spec:        sticky(base("sticky-memory-kill", "memory"), true),
			Faults:      kill("sp-2", 1.0/3),
		},
		{
			Name: "roundrobin-redis-kill", Strategy: "shared", Fault: "replica-killed",
			Description: "Shared state, and replica sp-2 killed (SIGKILL) a third of the way through.",
			Expect:      "Nothing is lost but the requests sp-2 was serving at the instant it died; sessions hold.",
			Spec:        base("roundrobin-redis-kill", "redis"),
			Faults:      kill("sp-2", 1.0/3),
		},
		{
			Name: "roundrobin-redis-outage", Strategy: "shared", Fault: "store-outage",
			Description:       "Shared state, and Redis stopped a third of the way through, restarted at two thirds.",
			Expect:            "During the outage logins fail cleanly with store-unavailable (503) and readiness fails; within about a second of Redis answering again (go-redis's dial circuit breaker probes once a second) every login succeeds. Sessions made before the outage are gone at the end: this Redis keeps nothing on disk.",
			Pace:              outagePace,
			Spec:              base("roundrobin-redis-outage", "redis"),
			Faults:            redisRestart,
			NeedsPrivateRedis: true,
			Alone:             aloneRecovery,
		},
		{
			Name: "roundrobin-redis-aof-restart", Strategy: "shared", Fault: "store-outage",
			Description:       "The same outage, with Redis persisting every write to its append-only file (appendfsync always).",
			Expect:            "During the outage logins fail with store-unavailable, as without persistence; after the restart Redis reloads its AOF, so the sessions made before the outage survive.",
			Pace:              outagePace,
			Spec:              withRedis(base("roundrobin-redis-aof-restart", "redis"), "aof"),
			Faults:            redisRestart,
			NeedsPrivateRedis: true,
			Alone:             aloneRecovery,
		},
		{
			Name: "roundrobin-redis-failover", Strategy: "shared", Fault: "store-failover",
			Description: "Redis under Sentinel: a master, a replica and one Sentinel (real redis-server --sentinel processes); the SPs find the master through the Sentinel (redis-sentinel://). The master is killed a third of the way through and never comes back.",
			Expect:      "No login is lost: for the failover window (the Sentinel waits 1 s of silence, then promotes the replica; the notes say how long it was) each replica's store holds and retries its operations, within its failover budget (5 s), and they go through on the new master, so logins in the window are slower, not failed; operations whose reply was lost with the master are recognised as their own when resent. The sessions were replicated, so they survive (the revisit waits 2 s for the failover to settle). Compare roundrobin-redis-outage, the same kill without a replica.",
			Pace:        time.Second,
			Load:        func(o *load.Options) { o.Settle = 2 * time.Second },
			Spec:        withRedis(base("roundrobin-redis-failover", "redis"), "sentinel"),
			Faults: func(t *topo.Topology) []load.Fault {
				return []load.Fault{{Kind: "kill", Target: "redis master", After: 1.0 / 3, Do: func(context.Context) error { return t.KillMasterWatched() }}}
			},
			Observe:           observeFailover,
			NeedsPrivateRedis: true,
			Alone:             "it measures the failover window (the kill to the Sentinel's +switch-master, each replica's hold) and its logins must ride that window within the store's 5 s failover budget: a Sentinel, a master or a replica starved of CPU by another scenario would stretch the window it reports, and could push logins past the budget",
		},
		{
			Name: "sticky-memory-rolling", Strategy: "affinity", Fault: "rolling-restart",
			Description: "Deploy day with affinity: every replica in turn gets SIGTERM, drains, exits and comes back; the proxy's health checks decide when it gets traffic again.",
			Expect:      "Each restart empties the replica's memory: the users pinned to it at that moment lose their sessions (gone at the end) and are re-pinned; requests caught by a stopping replica fail as errors (502). Users who log in after their replica came back keep their sessions.",
			Pace:        rollingPace,
			Spec:        sticky(base("sticky-memory-rolling", "memory"), true),
			Faults:      rolling(0.1),
			Alone:       aloneRolling,
		},
		{
			Name: "roundrobin-redis-rolling", Strategy: "shared", Fault: "rolling-restart",
			Description: "Deploy day with shared state: the same rolling restart behind round robin, sessions in Redis.",
			Expect:      "Sessions and logins in flight live in Redis and survive; only requests caught by a replica as it stops can fail (errors, not lost sessions).",
			Pace:        rollingPace,
			Spec:        base("roundrobin-redis-rolling", "redis"),
			Faults:      rolling(0.1),
			Alone:       aloneRolling,
		},
		{
			Name: "roundrobin-stateless-rolling", Strategy: "stateless", Fault: "rolling-restart",
			Description: "Deploy day, stateless: the same rolling restart behind round robin, state in signed cookies.",
			Expect:      "The browser carries the state and every replica shares the key: sessions survive; only requests caught by a stopping replica can fail.",
			Pace:        rollingPace,
			Spec:        base("roundrobin-stateless-rolling", "stateless"),
			Faults:      rolling(0.1),
			Alone:       aloneRolling,
		},
		{
			Name: "sticky-memory-scaleout", Strategy: "affinity", Fault: "scale-out",
			Description: "Scale out with affinity: a fourth replica, sp-4, joins a third of the way through (configured at the proxy from the start, down until it starts).",
			Expect:      "Nothing is lost. Under stickiness sp-4 gets only browsers that arrive without a cookie; every simulated user here is a new browser, so it takes about its share at once (the notes give its share and how soon its first request came). Users pinned before it joined stay where they are.",
			Pace:        time.Second,
			Spec:        withSpare(sticky(base("sticky-memory-scaleout", "memory"), true)),
			Faults:      scaleOut,
		},
		{
			Name: "roundrobin-redis-scaleout", Strategy: "shared", Fault: "scale-out",
			Description: "Scale out with shared state: sp-4 joins a third of the way through, behind round robin.",
			Expect:      "Nothing is lost; sp-4 carries about its share of the requests as soon as the proxy's health checks see it (the notes give its share and how soon its first request came).",
			Pace:        time.Second,
			Spec:        withSpare(base("roundrobin-redis-scaleout", "redis")),
			Faults:      scaleOut,
		},
		{
			Name: "migrate", Strategy: "migration", Fault: "rolling-restart",
			Description: "Moving from affinity to shared state under load: three memory replicas with --store-handoff behind the sticky proxy (the SameSite=None twin) are rolled one by one to --store redis; on SIGTERM each hands its logins in flight and sessions to Redis before it stops accepting, and the memory replicas still running read through to Redis; then stickiness is turned off at the proxy (admin API), leaving plain round robin over Redis.",
			Expect:      "No login fails and no session is lost, during the roll or after stickiness is off: the users re-pinned away from a stopping replica find their state in Redis, and every user comes back to a session at the end (compare sticky-memory-rolling, the same roll without the handoff).",
			Pace:        migratePace,
			Spec: func() topo.Spec {
				s := sticky(base("migrate", "memory"), true)
				s.Handoff = true
				return s
			}(),
			Faults: migrate(0.1),
			Alone:  aloneRolling,
		},
		{
			Name: "migrate-back", Strategy: "migration", Fault: "rolling-restart",
			Description: "Back from shared state to affinity under load: three replicas on Redis behind the proxy with stickiness switched off (round robin); stickiness is switched on (admin API), then the replicas are rolled one by one to --store memory --store-handoff to the same Redis, which read through to Redis for the logins and sessions made there.",
			Expect:      "No login fails and no session is lost: a user re-pinned away from a replica being rolled finds the state in Redis through the read-through, and new state stays in the memory of the replica its user is pinned to.",
			Pace:        migratePace,
			Spec: func() topo.Spec {
				s := sticky(base("migrate-back", "redis"), true)
				s.Unpinned = true
				return s
			}(),
			Faults: migrateBack(0.1),
			Alone:  aloneRolling,
		},
		{
			Name: "migrate-stateless", Strategy: "migration", Fault: "rolling-restart",
			Description: "Moving from stateless to shared state under load: three stateless replicas with --store-handoff to Redis (the first roll of the move, which keeps issuing signed cookies), behind round robin, rolled one by one to --store redis --accept-stateless; the Redis replicas finish logins begun in the stateless replicas' signed tracking cookies and accept their signed session cookies, and the stateless replicas still running finish logins begun in Redis and read the sessions kept there.",
			Expect:      "No login fails and no session is lost: whichever kind of replica a request lands on, it accepts the other kind's login in flight and session (compare roundrobin-stateless-rolling, a roll that changes nothing).",
			Pace:        migratePace,
			Spec: func() topo.Spec {
				s := base("migrate-stateless", "stateless")
				s.Handoff = true
				return s
			}(),
			Faults: migrateStateless(0.1),
			Alone:  aloneRolling,
		},
		{
			Name: "roundrobin-saml-aware-memory", Strategy: "saml-aware (memory)", Fault: "none",
			Description: "Per-replica memory behind round robin with the proxy's SAML-aware routing (--stickiness off --saml-aware): the ACS POST is routed by the instance its RelayState names.",
			Expect:      "The ACS POST reaches the replica that began the login, so logins succeed; every later request is balanced anew, so on memory stores most follow-ups find no session there (lost, cross-instance).",
			Spec: func() topo.Spec {
				s := base("roundrobin-saml-aware-memory", "memory")
				s.SAMLAware = true
				return s
			}(),
		},
		{
			Name: "sticky-lax-cookie", Phase: "lax", Strategy: "affinity", Fault: "lax-cookie",
			Description: "The SameSite trap: the affinity cookie is SameSite=Lax only, and the IdP is cross-site, so the browser withholds it from the IdP's POST to the ACS.",
			Expect:      "The ACS POST arrives without affinity and is balanced anew: about two logins in three land on another replica and fail cross-instance.",
			Spec:        sticky(base("sticky-lax-cookie-lax", "memory"), false),
		},
		{
			Name: "sticky-lax-cookie", Phase: "twin", Strategy: "affinity", Fault: "lax-cookie",
			Description: "The same, with the ALB-style SameSite=None; Secure twin cookie (over https).",
			Expect:      "The twin reaches the ACS; every login succeeds.",
			Spec:        sticky(base("sticky-lax-cookie-twin", "memory"), true),
		},
		{
			Name: "sticky-slow-user", Strategy: "affinity", Fault: "slow-user",
			Description: "The slow-user trap: the affinity cookie has no SameSite attribute (Lax by default), which Chrome still sends on a cross-site POST while it is under two minutes old (the proxy re-seals it on each response, so its age is the time since the SP redirected to the IdP). Half the users take 20 s at the IdP, half take 3 minutes (MFA, a password manager, a coffee), on the browser's clock.",
			Expect:      "The fast half passes. For the slow half the cookie is too old to go with the IdP's POST: the ACS POST is balanced anew and about two in three of those logins fail cross-instance.",
			Spec: func() topo.Spec {
				s := sticky(base("sticky-slow-user", "memory"), false)
				s.CookieSameSite = "default"
				return s
			}(),
			Load: func(o *load.Options) {
				o.LaxPlusPOST = true
				o.SimulatedThink = SlowUserThink
			},
		},
		{
			Name: "sticky-drain", Strategy: "affinity", Fault: "drain",
			Description: "The ALB fix, and replica sp-2 drained through the proxy's admin API a third of the way through (ALB semantics: no more requests, pinned ones included).",
			Expect:      "sp-2's pinned users are re-pinned elsewhere: their logins in flight fail cross-instance and their sessions are lost, as with a kill, though sp-2 never crashed.",
			Spec:        sticky(base("sticky-drain", "memory"), true),
			Faults: func(t *topo.Topology) []load.Fault {
				return []load.Fault{{Kind: "drain", Target: "sp-2", After: 1.0 / 3, Do: func(ctx context.Context) error { return t.DrainReplica(ctx, "sp-2") }}}
			},
		},
		{
			Name: "stateless-key-mismatch", Strategy: "stateless", Fault: "key-mismatch",
			Description: "Stateless mode with a different SP key on each replica, behind round robin.",
			Expect:      "Logins finished by a replica other than the one that began them fail with state-signature-invalid, and the page tells the operator to share --sp-key. Those that come back to their own replica mostly fail too, as response-invalid (decryption): the IdP encrypted the assertion for the one key in the metadata it fetched (sp-1's).",
			Spec: func() topo.Spec {
				s := base("stateless-key-mismatch", "stateless")
				s.DistinctKeys = true
				return s
			}(),
		},
		{
			Name: "gateway-roundrobin-redis", Strategy: "gateway", Fault: "replica-killed",
			Description: "Gateway mode: an application with no SAML code (demoapp) behind three samlsp gateways on one Redis, balanced round robin; gateway sp-2 killed (SIGKILL) a third of the way through. The app answers with the user only when the identity JWT verifies against /saml/jwks.json.",
			Expect:      "Nearly every login succeeds on the first try and the app verifies every identity; only requests sp-2 was serving at the instant it died can fail. Sessions live in Redis and hold.",
			Spec:        gateway(base("gateway-roundrobin-redis", "redis"), topo.GatewayProxy),
			Faults:      kill("sp-2", 1.0/3),
		},
		{
			Name: "gateway-roundrobin-redis-rolling", Strategy: "gateway", Fault: "rolling-restart",
			Description: "Deploy day in gateway mode: every samlsp gateway in front of demoapp gets SIGTERM in turn, drains, and comes back, behind round robin, sessions in Redis; the proxy's health checks decide when it gets traffic again.",
			Expect:      "As for shared state: sessions and logins in flight live in Redis and survive, and the app keeps verifying every identity (the JWT keys are the same on every gateway); only requests caught by a stopping gateway can fail (errors, not lost sessions).",
			Pace:        rollingPace,
			Spec:        gateway(base("gateway-roundrobin-redis-rolling", "redis"), topo.GatewayProxy),
			Faults:      rolling(0.1),
			Alone:       aloneRolling,
		},
		{
			Name: "gateway-forward-auth", Strategy: "gateway", Fault: "none",
			Description: "Forward-auth: nginx serves the application (demoapp) and asks samlsp about each request with auth_request (deploy/nginx-forward-auth.conf, only its addresses and TLS changed); three samlsp replicas on one Redis, round robin.",
			Expect:      "Every login succeeds, the app verifies every identity JWT, and sessions hold. Needs nginx (skipped without it, but not under CI=true).",
			Spec:        gateway(base("gateway-forward-auth", "redis"), topo.GatewayForwardAuth),
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
