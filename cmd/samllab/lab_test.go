package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/samlha/samlha/cmd/samllab/internal/results"
	"github.com/samlha/samlha/cmd/samllab/internal/topo"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/store/localproc"
	"github.com/samlha/samlha/store/redis/redistest"
)

// A topology starts every part, serves a login through the proxy, and
// leaves no process behind when stopped.
func TestTopologyStartStop(t *testing.T) {
	env := newEnv(t)
	top, err := topo.Start(context.Background(), env, topo.Spec{Name: "startstop", Replicas: 2, Store: "redis",
		Stickiness: "duration", Twin: true, TLS: true, CrossSite: true})
	if err != nil {
		t.Fatal(err)
	}
	pids := []int{top.IdP.Pid(), top.Proxy.Pid(), top.Redis.Pid()}
	for _, r := range top.Replicas {
		pids = append(pids, r.Proc.Pid())
	}
	b := sptest.NewBrowser(sptest.Options{Resolve: top.Resolve, RootCAs: top.RootCAs})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if res := b.Login(ctx, top.PublicURL+"/app", "bob", "bob-password"); !res.OK {
		t.Fatalf("login through the lab topology: %s %v", res.Cause, res.Err)
	}
	for name, rel := range top.Logs() {
		if st, err := os.Stat(filepath.Join(env.Dir, rel)); err != nil || st.Size() == 0 {
			t.Errorf("log of %s (%s) missing or empty: %v", name, rel, err)
		}
	}
	top.Stop()
	for _, pid := range pids {
		if pid == 0 {
			t.Fatal("a process was never started")
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after Stop (kill -0: %v)", pid, err)
		}
	}
	top.Stop() // idempotent
}

// Faults: a killed replica stops answering; a drained one leaves the
// proxy's rotation; Redis stops and comes back on its port.
func TestTopologyFaults(t *testing.T) {
	env := newEnv(t)
	top, err := topo.Start(context.Background(), env, topo.Spec{Name: "faults", Replicas: 3, Store: "redis"})
	if err != nil {
		t.Fatal(err)
	}
	defer top.Stop()
	ctx := context.Background()
	if err := top.KillReplica("sp-3"); err != nil {
		t.Fatal(err)
	}
	// A process down that no fault explains is a crash; one a fault
	// took down is not.
	if c := top.Crashed(nil); len(c) != 1 || !strings.HasPrefix(c[0], "sp-3 exited") {
		t.Errorf("Crashed without the fault: %q; want sp-3", c)
	}
	if c := top.Crashed(map[string]bool{"sp-3": true}); len(c) != 0 {
		t.Errorf("Crashed with sp-3's fault: %q; want none", c)
	}
	if _, err := http.Get(top.Replicas[2].URL + "/healthz"); err == nil {
		t.Error("sp-3 still answers after the kill")
	}
	if err := top.DrainReplica(ctx, "sp-2"); err != nil {
		t.Fatal(err)
	}
	ts, err := top.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ts {
		if s.Name == "sp-2" && !s.Draining {
			t.Error("sp-2 not draining after DrainReplica")
		}
	}
	if err := top.DrainReplica(ctx, "sp-9"); err == nil {
		t.Error("draining an unknown target succeeded")
	}
	if err := top.StopRedis(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(top.Replicas[0].URL + "/readyz")
	if err != nil || resp.StatusCode != 503 {
		t.Errorf("/readyz with Redis stopped: %v %v, want 503", resp, err)
	}
	if err := top.StartRedis(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(top.Replicas[0].URL + "/readyz")
		if err == nil && resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sp-1 not ready again after Redis restarted: %v %v", resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runLab runs samllab with args into a fresh run directory and returns the
// results and the printed output.
func runLab(t *testing.T, args ...string) (*results.Run, string) {
	t.Helper()
	r, printed, err := runLabIn(filepath.Join(t.TempDir(), "run"), args...)
	if err != nil {
		t.Fatal(err)
	}
	return r, printed
}

// runLabIn runs samllab with args into the run directory out, with the
// test binaries, and checks that it wrote results.json and report.html.
func runLabIn(out string, args ...string) (*results.Run, string, error) {
	var stdout, stderr bytes.Buffer
	args = append([]string{"run", "--out", out, "--bin-dir", filepath.Dir(testBins.SP), "--progress", "off"}, args...)
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		return nil, "", fmt.Errorf("samllab %s: %v\n%s\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	r, err := results.Read(filepath.Join(out, "results.json"))
	if err != nil {
		return nil, "", err
	}
	if st, err := os.Stat(filepath.Join(out, "report.html")); err != nil || st.Size() == 0 {
		return nil, "", fmt.Errorf("report.html: %v", err)
	}
	return r, stdout.String(), nil
}

func scenarioByName(t *testing.T, r *results.Run, name string) results.Scenario {
	t.Helper()
	for _, s := range r.Scenarios {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no scenario %q in the results", name)
	return results.Scenario{}
}

// The scenarios show what they are meant to, with the accounting adding up.
func TestScenarioOutcomes(t *testing.T) {
	// Parallel: it only reads the shared run, begun by TestMain.
	t.Parallel()
	r, printed := sharedRun.get(t, "TestScenarioOutcomes")
	for _, s := range r.Scenarios {
		if s.Skipped != "" {
			t.Fatalf("%s skipped: %s", s.Name, s.Skipped)
		}
		if s.Logins.Tried != 30 || s.Logins.Succeeded+s.Logins.FailedTotal() != s.Logins.Tried {
			t.Errorf("%s: tried %d, succeeded %d, failed %d: does not add up to 30", s.Name, s.Logins.Tried, s.Logins.Succeeded, s.Logins.FailedTotal())
		}
		total := 0
		for _, rep := range s.Replicas {
			total += rep.Requests
		}
		if total == 0 || len(s.Replicas) != 3 {
			t.Errorf("%s: replicas %+v", s.Name, s.Replicas)
		}
		if !strings.Contains(printed, s.Name) {
			t.Errorf("the table does not show %s", s.Name)
		}
	}
	rr := scenarioByName(t, r, "roundrobin-memory")
	if rr.Logins.Failed["state-not-found-cross-instance"] == 0 || rr.Logins.Succeeded > rr.Logins.Tried/2 {
		t.Errorf("roundrobin-memory: %+v; want mostly cross-instance failures", rr.Logins)
	}
	// The SameSite trap, with the browser's emulation of Chrome's rules.
	lax := scenarioByName(t, r, "sticky-lax-cookie/lax")
	if lax.Logins.Failed["state-not-found-cross-instance"] == 0 {
		t.Errorf("sticky-lax-cookie/lax: %+v; want cross-instance failures (the Lax cookie withheld from the ACS POST)", lax.Logins)
	}
	twin := scenarioByName(t, r, "sticky-lax-cookie/twin")
	if twin.Logins.Succeeded != twin.Logins.Tried || twin.Sessions.Lost != 0 {
		t.Errorf("sticky-lax-cookie/twin: %+v %+v; want every login to succeed and every session to hold", twin.Logins, twin.Sessions)
	}
	out := scenarioByName(t, r, "roundrobin-redis-outage")
	if out.Logins.Failed["store-unavailable"] == 0 || len(out.Faults) != 2 {
		t.Errorf("roundrobin-redis-outage: %+v faults %+v; want store-unavailable failures and two faults", out.Logins, out.Faults)
	}
	for c := range out.Logins.Failed {
		if c != "store-unavailable" {
			t.Errorf("roundrobin-redis-outage: a failure other than store-unavailable: %s (%d)", c, out.Logins.Failed[c])
		}
	}
	kill := scenarioByName(t, r, "sticky-memory-kill")
	if len(kill.Faults) != 1 || kill.Faults[0].Target != "sp-2" || kill.Replicas[1].Fault != "kill" {
		t.Errorf("sticky-memory-kill faults %+v replicas %+v", kill.Faults, kill.Replicas)
	}
}

// --target drives a topology the lab did not start, naming its replicas
// from their X-Samlha-Instance headers.
func TestRunAgainstTarget(t *testing.T) {
	env := newEnv(t)
	top, err := topo.Start(context.Background(), env, topo.Spec{Name: "target", Replicas: 2, Store: "redis"})
	if err != nil {
		t.Fatal(err)
	}
	defer top.Stop()
	r, printed := runLab(t, "--target", top.PublicURL, "--logins", "12", "--concurrency", "3")
	if len(r.Scenarios) != 1 || r.Target != top.PublicURL {
		t.Fatalf("scenarios %+v target %q", r.Scenarios, r.Target)
	}
	s := r.Scenarios[0]
	if s.Name != "target" || s.Logins.Tried != 12 || s.Logins.Succeeded != 12 {
		t.Errorf("target run: %+v", s.Logins)
	}
	var ids []string
	for _, rep := range s.Replicas {
		ids = append(ids, rep.ID)
	}
	if strings.Join(ids, ",") != "sp-1,sp-2" {
		t.Errorf("replicas %v, want sp-1 and sp-2 from the instance header", ids)
	}
	if !strings.Contains(printed, "target") {
		t.Error("the table does not show the target run")
	}
	// Nothing listening: a clear error, not an empty report.
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"run", "--target", "http://127.0.0.1:1", "--logins", "2", "--progress", "off",
		"--out", filepath.Join(t.TempDir(), "dead")}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "is the topology up") {
		t.Errorf("a dead target: %v", err)
	}
}

// The README's quick start: samllab up serves a topology a person can log
// in to, prints where, and stops everything on cancel.
func TestUp(t *testing.T) {
	// Parallel (free ports, its own directory): it mostly waits, so it
	// overlaps the deploy-day scenarios after the serial tests.
	t.Parallel()
	up := startUp(t, "--replicas", "2", "--store", "redis")
	lctx, lcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer lcancel()
	for i := range 2 {
		res := sptest.NewBrowser(sptest.Options{}).Login(lctx, up.appURL, "alice", "alice-password")
		if !res.OK || res.StartInstance == res.ACSInstance {
			t.Fatalf("login %d at %s: ok=%v cause=%s start=%s acs=%s", i, up.appURL, res.OK, res.Cause, res.StartInstance, res.ACSInstance)
		}
	}
	up.stop(t)
}

// --redis-url: the lab uses an existing Redis, each scenario under a key
// prefix of its own.
func TestRunWithRedisURL(t *testing.T) {
	srv := redistest.Start(t)
	r, _ := runLab(t, "--scenarios", "roundrobin-redis", "--logins", "6", "--concurrency", "2", "--redis-url", srv.URL())
	if s := scenarioByName(t, r, "roundrobin-redis"); s.Logins.Succeeded != 6 {
		t.Fatalf("roundrobin-redis on --redis-url: %+v", s.Logins)
	}
	keys, err := srv.Client().Keys(context.Background(), "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys on the given Redis: %v %v", keys, err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "samllab:roundrobin-redis:") {
			t.Errorf("key %q is not under the scenario's prefix", k)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A port collision: sp-1's port is taken by another process before sp-1
// binds it. sp-1 exits with "address already in use", the lab sees it at
// once (not after a timeout, not through a stranger's answer) and starts
// the topology again on new ports.
func TestTopologyPortCollision(t *testing.T) {
	env := newEnv(t)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldPort := held.Addr().(*net.TCPAddr).Port
	var calls atomic.Int32
	env.PickPort = func() int {
		// Ports are picked idp, proxy, admin, then sp-1: give sp-1 the
		// taken one, once.
		if calls.Add(1) == 4 {
			return heldPort
		}
		return localproc.Port()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	top, err := topo.Start(ctx, env, topo.Spec{Name: "collide", Replicas: 2, Store: "memory"})
	if err != nil {
		t.Fatalf("the topology did not start on new ports: %v", err)
	}
	defer top.Stop()
	if top.Replicas[0].Port == heldPort {
		t.Fatal("sp-1 still has the taken port")
	}
	if !strings.HasSuffix(top.Dir, "collide.try2") {
		t.Errorf("topology directory %s: want the second attempt's", top.Dir)
	}
	first, _ := os.ReadFile(filepath.Join(env.Dir, "collide", "sp-1.log"))
	if !strings.Contains(string(first), "address already in use") {
		t.Errorf("the first sp-1's log does not show the bind failure:\n%s", first)
	}
	b := sptest.NewBrowser(sptest.Options{Resolve: top.Resolve, RootCAs: top.RootCAs})
	if res := b.Login(ctx, top.PublicURL+"/app", "bob", "bob-password"); !res.OK && res.Cause != "state-not-found-cross-instance" {
		t.Fatalf("login through the restarted topology: %s %v", res.Cause, res.Err)
	}
}

// A child that crashes: the scenario is recorded as failed, with the
// child's own words and its log, and the next scenario still runs;
// results.json and report.html are written, and the exit status says that
// not every scenario ran.
func TestRunSurvivesACrashingChild(t *testing.T) {
	bin := t.TempDir()
	for _, name := range []string{"stickyproxy", "devidp"} {
		if err := os.Symlink(filepath.Join(filepath.Dir(testBins.SP), name), filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	// samlsp crashes whenever it is started stateless, and runs otherwise.
	script := "#!/bin/sh\ncase \"$*\" in *'--store stateless'*) echo 'boom: samlsp cannot start'; exit 3;; esac\nexec " + testBins.SP + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "samlsp"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "run")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"run", "--out", out, "--bin-dir", bin, "--progress", "off",
		"--scenarios", "roundrobin-stateless,sticky-memory", "--logins", "6", "--concurrency", "2"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "1 of 2 scenarios did not run as planned") {
		t.Fatalf("exit error %v; want it to say one of two scenarios failed\n%s", err, stdout.String())
	}
	r, rerr := results.Read(filepath.Join(out, "results.json"))
	if rerr != nil {
		t.Fatal(rerr)
	}
	if st, err := os.Stat(filepath.Join(out, "report.html")); err != nil || st.Size() == 0 {
		t.Fatalf("report.html: %v", err)
	}
	crashed := scenarioByName(t, r, "roundrobin-stateless")
	if !strings.Contains(crashed.Error, "boom: samlsp cannot start") || !strings.Contains(crashed.Error, "exit status 3") {
		t.Errorf("the failed scenario's error does not quote the child: %q", crashed.Error)
	}
	if len(crashed.Logs) == 0 {
		t.Error("the failed scenario names no logs")
	}
	if ok := scenarioByName(t, r, "sticky-memory"); ok.Error != "" || ok.Logins.Succeeded != 6 {
		t.Errorf("the scenario after the crash: error %q, logins %+v", ok.Error, ok.Logins)
	}
	if !strings.Contains(stdout.String(), "FAILED: the topology did not start") {
		t.Errorf("the table does not show the failure:\n%s", stdout.String())
	}
}

// The deploy-day scenarios show what they are meant to: a Redis failover
// under Sentinel and a Redis restart with AOF keep every session; a
// rolling restart with shared state loses none; a replica added at run
// time gets requests; the slow users of the Lax+POST trap fail cross-
// instance while the fast ones pass.
func TestDeployDayScenarios(t *testing.T) {
	// Parallel: it only reads the shared run, begun by TestMain.
	t.Parallel()
	r, _ := sharedRun.get(t, "TestDeployDayScenarios")
	for _, s := range r.Scenarios {
		if s.Skipped != "" || s.Error != "" {
			t.Fatalf("%s: skipped %q, error %q", s.Name, s.Skipped, s.Error)
		}
	}
	for _, name := range []string{"roundrobin-redis-failover", "roundrobin-redis-aof-restart"} {
		s := scenarioByName(t, r, name)
		if len(s.Faults) == 0 || s.Sessions.Revisited == 0 || s.Sessions.Gone != 0 || s.Sessions.RevisitErrors != 0 {
			t.Errorf("%s: faults %+v sessions %+v; want every session kept and reachable at the end", name, s.Faults, s.Sessions)
		}
		for c := range s.Logins.Failed {
			if c != "store-unavailable" {
				t.Errorf("%s: a failure other than store-unavailable: %s", name, c)
			}
		}
	}
	// The failover window is ridden out: logins in it wait (within the
	// store's failover budget) rather than fail, and the notes say how
	// long the window was.
	fo := scenarioByName(t, r, "roundrobin-redis-failover")
	if fo.Logins.Succeeded*100 < fo.Logins.Tried*95 {
		t.Errorf("roundrobin-redis-failover: %d of %d logins succeeded, want at least 95%%: %+v", fo.Logins.Succeeded, fo.Logins.Tried, fo.Logins.Failed)
	}
	if w := fo.Window; w == nil || !w.Switched || w.Switch <= 0 || len(w.Held) == 0 {
		t.Errorf("roundrobin-redis-failover: window %+v; want the time from the kill to +switch-master and the replicas' holds", w)
	}
	if !slices.ContainsFunc(fo.Notes, func(n string) bool { return strings.HasPrefix(n, "failover window: ") }) {
		t.Errorf("roundrobin-redis-failover: no note says how long the failover window was: %q", fo.Notes)
	}
	if s := scenarioByName(t, r, "roundrobin-redis-rolling"); len(s.Faults) != 1 || s.Sessions.Gone != 0 {
		t.Errorf("roundrobin-redis-rolling: faults %+v sessions %+v; want no session gone", s.Faults, s.Sessions)
	}
	scale := scenarioByName(t, r, "roundrobin-redis-scaleout")
	if len(scale.Replicas) != 4 || scale.Replicas[3].ID != "sp-4" || scale.Replicas[3].Requests == 0 {
		t.Errorf("roundrobin-redis-scaleout: replicas %+v; want sp-4 to have served requests", scale.Replicas)
	}
	// Half the users are slow; of those, the ACS POST goes to the right
	// replica by chance one time in three.
	slow := scenarioByName(t, r, "sticky-slow-user")
	if f := slow.Logins.Failed["state-not-found-cross-instance"]; f == 0 || slow.Logins.Succeeded < slow.Logins.Tried/2 {
		t.Errorf("sticky-slow-user: %+v; want cross-instance failures among the slow half only", slow.Logins)
	}
}
