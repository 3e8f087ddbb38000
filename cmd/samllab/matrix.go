package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/samlha/samlha/cmd/internal/cli"
	"github.com/samlha/samlha/cmd/samllab/internal/chromium"
	"github.com/samlha/samlha/cmd/samllab/internal/load"
	"github.com/samlha/samlha/cmd/samllab/internal/report"
	"github.com/samlha/samlha/cmd/samllab/internal/results"
	"github.com/samlha/samlha/cmd/samllab/internal/scenario"
	"github.com/samlha/samlha/cmd/samllab/internal/topo"
	"github.com/samlha/samlha/sp/sptest"
)

type runOptions struct {
	scenarios   cli.StringList
	logins      int
	concurrency int
	think       time.Duration
	followUps   int
	followGap   time.Duration
	revisit     bool
	out         string
	binDir      string
	redisURL    string
	target      string
	caFile      string
	deadline    time.Duration
	progress    string
	logLevel    string
	chromium    int
	chromiumBin string
	parallel    int
}

func parseRunFlags(args []string, stderr io.Writer) (*runOptions, error) {
	o := &runOptions{}
	fs := flag.NewFlagSet("samllab run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&o.scenarios, "scenarios", "scenarios to run, comma-separated (default: all; see samllab scenarios);\na name selects all its phases, name/phase one of them")
	fs.IntVar(&o.logins, "logins", 80, "logins per scenario (M); more gives steadier numbers and a longer run")
	fs.IntVar(&o.concurrency, "concurrency", 16, "logins in flight at once (C)")
	fs.DurationVar(&o.think, "think", 250*time.Millisecond, "think time at the IdP's login form (a person takes seconds; this is scaled down)")
	fs.IntVar(&o.followUps, "follow-ups", 2, "requests to /app each user makes right after logging in, to see whether the session holds")
	fs.DurationVar(&o.followGap, "follow-up-gap", 50*time.Millisecond, "pause before each follow-up request")
	fs.BoolVar(&o.revisit, "revisit", true, "at the end of each scenario, after its faults, send every logged-in user to /app once more")
	fs.StringVar(&o.out, "out", "", "run directory for results.json, report.html and the children's logs\n(default: a new timestamped directory under ./samllab-runs/)")
	fs.StringVar(&o.binDir, "bin-dir", "", "directory with prebuilt samlsp, stickyproxy, devidp and demoapp (default: build them with the go command)")
	fs.StringVar(&o.redisURL, "redis-url", "", "use this Redis instead of starting a private redis-server (keys get a per-scenario prefix;\nthe outage scenario still needs redis-server)")
	fs.StringVar(&o.target, "target", "", "drive this URL (a topology samllab did not start, e.g. http://localhost:8080) instead of the matrix")
	fs.StringVar(&o.caFile, "ca-file", "", "with --target: PEM CA to trust for https")
	fs.DurationVar(&o.deadline, "deadline", 3*time.Minute, "upper bound on each scenario's load")
	fs.StringVar(&o.progress, "progress", "auto", "progress bars: auto (on a terminal), on or off")
	fs.StringVar(&o.logLevel, "log-level", "warn", "samllab's own log level (the children log to files in the run directory)")
	fs.IntVar(&o.chromium, "chromium", 0, "after each scenario's load, also log in N times with headless Chromium, each beside a scripted\nlogin, and report whether the two browsers agree (needs chromium on PATH; at most 20)")
	fs.IntVar(&o.parallel, "parallel", defaultParallel(), "scenarios run at once, each on its own ports, processes and directory (1: one after another);\nthe scenarios that measure a timing window run alone, after the others, whatever this says (see samllab scenarios)")
	if err := cli.Parse(fs, args, "SAMLLAB", summary); err != nil {
		return nil, err
	}
	var p cli.Problems
	if fs.NArg() > 0 {
		p.Addf("unexpected arguments %q", fs.Args())
	}
	if o.logins < 1 {
		p.Addf("--logins must be at least 1")
	}
	if o.concurrency < 1 {
		p.Addf("--concurrency must be at least 1")
	}
	if o.think < 0 || o.followUps < 0 || o.followGap < 0 {
		p.Addf("--think, --follow-ups and --follow-up-gap must not be negative")
	}
	if o.target != "" {
		if u, err := url.Parse(o.target); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			p.Addf("--target %q must be an http or https URL", o.target)
		}
		if len(o.scenarios) > 0 {
			p.Addf("--target drives one topology; --scenarios does not apply")
		}
	}
	if _, err := scenario.Select(o.scenarios); err != nil {
		p.Addf("--scenarios: %v", err)
	}
	if o.parallel < 1 || o.parallel > maxParallel {
		p.Addf("--parallel %d: want 1 to %d", o.parallel, maxParallel)
	}
	if o.chromium < 0 || o.chromium > maxChromium {
		p.Addf("--chromium %d: want 0 to %d", o.chromium, maxChromium)
	}
	if o.chromium > 0 {
		if o.chromiumBin = chromium.Find(); o.chromiumBin == "" {
			p.Addf("--chromium needs chromium (or chromium-browser, google-chrome) on PATH")
		}
		if o.target != "" {
			p.Addf("--chromium runs with the lab's own topologies, not --target")
		}
	}
	switch o.progress {
	case "auto", "on", "off":
	default:
		p.Addf("--progress %q: want auto, on or off", o.progress)
	}
	return o, p.Err()
}

func runMatrix(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseRunFlags(args, stderr)
	if err != nil {
		return err
	}
	logger, err := cli.NewLogger(stderr, "text", o.logLevel)
	if err != nil {
		return err
	}
	ctx, stop := cli.SignalContext(ctx)
	defer stop()

	if o.out == "" {
		o.out = filepath.Join("samllab-runs", time.Now().Format("20060102-150405"))
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	absOut, _ := filepath.Abs(o.out)
	run := &results.Run{Version: results.Version, Started: time.Now(), Dir: absOut, Host: hostInfo(), Target: o.target}

	lo := load.Options{Logins: o.logins, Concurrency: o.concurrency, ThinkTime: o.think,
		FollowUps: o.followUps, FollowUpGap: o.followGap, Deadline: o.deadline, Revisit: o.revisit}
	bars := newProgress(stdout, o.progress)

	// Whatever happens to the scenarios, results.json and report.html are
	// written, and the exit status says whether every scenario ran.
	var runErr error
	if o.target != "" {
		runErr = driveTarget(ctx, o, lo, bars, run)
	} else {
		run.Parallel = o.parallel
		runErr = runScenarios(ctx, o, lo, bars, run, logger, stdout)
	}
	bars.Wait()
	run.Finished = time.Now()
	if runErr != nil {
		run.Error = runErr.Error()
	}
	if err := writeOutputs(run, absOut, stdout); err != nil {
		return errors.Join(runErr, err)
	}
	if runErr != nil {
		return runErr
	}
	var failed []string
	for _, s := range run.Scenarios {
		if s.Error != "" {
			failed = append(failed, s.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d scenarios did not run as planned (%s): see their errors in %s", len(failed), len(run.Scenarios),
			strings.Join(failed, ", "), filepath.Join(absOut, "report.html"))
	}
	return nil
}

func writeOutputs(run *results.Run, dir string, stdout io.Writer) error {
	if err := results.Write(filepath.Join(dir, "results.json"), run); err != nil {
		return err
	}
	if err := writeReport(filepath.Join(dir, "report.html"), run); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	report.Table(stdout, run)
	fmt.Fprintf(stdout, "\nresults: %s\nreport:  %s\n", filepath.Join(dir, "results.json"), filepath.Join(dir, "report.html"))
	return nil
}

// writeReport renders the report in memory and writes it only if that
// worked, so a failed render leaves no empty file behind.
func writeReport(path string, run *results.Run) error {
	var buf bytes.Buffer
	if err := report.HTML(&buf, run); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func runScenarios(ctx context.Context, o *runOptions, lo load.Options, bars *progress, run *results.Run, logger *slog.Logger, stdout io.Writer) (err error) {
	scs, _ := scenario.Select(o.scenarios)
	var bins topo.Binaries
	if o.binDir != "" {
		bins, err = topo.Find(o.binDir)
	} else {
		fmt.Fprintln(stdout, "building samlsp, stickyproxy, devidp and demoapp ...")
		began := time.Now()
		bins, err = topo.Build(ctx, "")
		logger.Debug("binaries built", "took", time.Since(began))
	}
	if err != nil {
		return err
	}
	env, err := topo.NewEnv(run.Dir, bins, o.redisURL, logger)
	if err != nil {
		return err
	}
	if bins.Redis == "" && o.redisURL == "" {
		fmt.Fprintln(stdout, "note: redis-server is not installed and no --redis-url was given: the Redis scenarios will be skipped (apt-get install redis-server)")
	}
	// Up to o.parallel scenarios run at once: first those that may share
	// the machine, in matrix order, then, one at a time with nothing beside
	// them, those marked Alone (one wait for the machine to empty, not one
	// before each). Each writes its own slot of the results and its own
	// lane of the progress lines, which come out in matrix order.
	out := make([]results.Scenario, len(scs))
	lanes := newLanes(stdout, len(scs))
	var shared, alone []int
	for i, s := range scs {
		rs := &out[i]
		*rs = results.Scenario{Name: s.ID(), Description: s.Description, Strategy: s.Strategy, Fault: s.Fault, Topology: s.Topology(), Expect: s.Expect}
		pr := bars.lane(i, lanes.lane(i))
		switch skipped, failed := notRun(s, bins, o.redisURL); {
		case failed != "":
			rs.Error = failed
			pr.Fail(s.ID(), failed)
			lanes.done(i)
		case skipped != "":
			rs.Skipped = skipped
			pr.Skip(s.ID(), skipped)
			lanes.done(i)
		case s.Alone != "":
			alone = append(alone, i)
		default:
			shared = append(shared, i)
		}
	}
	slots := newSlots(o.parallel)
	var wg sync.WaitGroup
	for _, i := range append(shared, alone...) {
		s, rs := scs[i], &out[i]
		n := 1
		if s.Alone != "" {
			n = o.parallel
		}
		if ctx.Err() != nil || !slots.take(ctx, n) {
			rs.Skipped = "interrupted before it began"
			lanes.done(i)
			continue
		}
		bar := bars.lane(i, lanes.lane(i)).Add(s.ID(), lo.Logins)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer lanes.done(i)
			defer slots.give(n)
			runScenario(ctx, env, s, lo, bar, rs, o)
			if rs.Error != "" {
				logger.Warn("scenario failed", "scenario", rs.Name, "reason", rs.Error)
			}
		}()
	}
	wg.Wait()
	run.Scenarios = append(run.Scenarios, out...)
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return nil
}

// runScenario runs one scenario into rs. A topology that does not start,
// a process that crashes without a fault causing it, even a panic in the
// lab, is recorded in rs.Error with the logs: the run goes on.
func runScenario(ctx context.Context, env *topo.Env, s scenario.Scenario, lo load.Options, bar *bar, rs *results.Scenario, o *runOptions) {
	var top *topo.Topology
	defer func() {
		if p := recover(); p != nil {
			rs.Error = fmt.Sprintf("the lab panicked: %v\n%s", p, debug.Stack())
		}
		if top != nil {
			rs.Logs = top.Logs()
			began := time.Now()
			top.Stop()
			env.Logger.Debug("topology stopped", "scenario", s.ID(), "took", time.Since(began))
		}
		if rs.Error != "" {
			bar.Abort()
		} else {
			bar.Finish(rs.Logins)
		}
	}()
	var err error
	began := time.Now()
	top, err = topo.Start(ctx, env, s.Spec)
	env.Logger.Debug("topology started", "scenario", s.ID(), "took", time.Since(began), "err", err)
	if err != nil {
		rs.Error = "the topology did not start: " + err.Error()
		rs.Logs = logsUnder(env.Dir, s.Spec.Name)
		return
	}
	var faults []load.Fault
	faulted := map[string]string{}
	expected := map[string]bool{}
	if s.Faults != nil {
		faults = s.Faults(top)
		for _, f := range faults {
			faulted[f.Target] = f.Kind
			expected[f.Target] = true
		}
	}
	slo := lo
	slo.OnDone = bar.Done
	slo.Pace = s.Pace
	if s.Load != nil {
		s.Load(&slo)
	}
	out := load.Drive(ctx, load.Target{PublicURL: top.PublicURL, Resolve: top.Resolve, RootCAs: top.RootCAs}, slo, faults)
	var ids []string
	for _, r := range top.Replicas {
		ids = append(ids, r.ID)
	}
	for _, r := range top.Spares {
		ids = append(ids, r.ID)
	}
	load.Summarize(rs, out, slo, ids, faulted)
	if s.Observe != nil {
		s.Observe(top, rs)
	}
	if o.chromium > 0 {
		rs.Chromium = compareChromium(ctx, o, top, slo)
	}
	if crashed := top.Crashed(expected); len(crashed) > 0 {
		rs.Error = "a process crashed during the run, and no fault of the scenario did it: " + strings.Join(crashed, "\n")
	}
}

// maxChromium bounds --chromium: each Chromium login starts a browser.
const maxChromium = 20

// compareChromium logs in o.chromium times with Chromium, each time beside
// a scripted login on the same topology, and counts the pairs that agree.
func compareChromium(ctx context.Context, o *runOptions, top *topo.Topology, lo load.Options) *results.Chromium {
	c := &results.Chromium{}
	for i := range o.chromium {
		if ctx.Err() != nil {
			break
		}
		c.Logins++
		real, err := chromium.Login(ctx, chromium.Options{ExecPath: o.chromiumBin, Resolve: top.Resolve}, top.PublicURL+"/app", "alice", "alice-password")
		if err != nil {
			c.Disagreements = append(c.Disagreements, fmt.Sprintf("login %d: Chromium: %v", i+1, err))
			continue
		}
		if real.OK {
			c.Succeeded++
		}
		// The scripted twin: Chrome's rules, Lax+POST included when the
		// scenario emulates it; no simulated think time (Chromium's
		// logins are fast).
		b := sptest.NewBrowser(sptest.Options{Resolve: top.Resolve, RootCAs: top.RootCAs, LaxPlusPOST: lo.LaxPlusPOST, RequestTimeout: 10 * time.Second})
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		script := b.Login(lctx, top.PublicURL+"/app", "alice", "alice-password")
		cancel()
		b.CloseIdleConnections()
		if why := disagreement(real, script); why != "" {
			c.Disagreements = append(c.Disagreements, fmt.Sprintf("login %d: %s", i+1, why))
			continue
		}
		c.Agreed++
	}
	return c
}

// disagreement says how a Chromium login and a scripted one differ, or ""
// if they agree: the same cookies on the ACS POST and, when both were
// routed alike, the same outcome and cause.
func disagreement(real chromium.Result, script *sptest.Result) string {
	var acs *sptest.Hop
	for i := range script.Hops {
		if script.Hops[i].Form == sptest.FormSAMLResponse {
			acs = &script.Hops[i]
		}
	}
	if acs == nil {
		return fmt.Sprintf("the scripted browser made no ACS POST (%s)", script.Cause)
	}
	rc, sc := cookieKinds(real.CookiesSent), cookieKinds(acs.CookiesSent)
	if !slices.Equal(rc, sc) {
		return fmt.Sprintf("cookies on the ACS POST: Chromium %v (withheld %v), scripted %v", rc, real.CookiesBlocked, sc)
	}
	realCrossed := real.StartInstance != real.ACSInstance
	scriptCrossed := script.StartInstance != script.ACSInstance
	if realCrossed == scriptCrossed && (real.OK != script.OK || real.Cause != script.Cause) {
		return fmt.Sprintf("outcome: Chromium ok=%v %q, scripted ok=%v %q", real.OK, real.Cause, script.OK, script.Cause)
	}
	return ""
}

// cookieKinds sorts cookie names with each login's own suffix replaced by
// "*": the SP's binding cookie (samlha_binding_<nonce>, __Host- on https)
// and crewjam's tracking cookie (saml_<RelayState>) are named after the
// login, so two browsers' logins send different names of the same kind.
func cookieKinds(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		for _, p := range []string{"__Host-samlha_binding_", "samlha_binding_", "saml_"} {
			if strings.HasPrefix(n, p) {
				n = p + "*"
				break
			}
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// logsUnder lists the log files of a topology that did not start.
func logsUnder(dir, name string) map[string]string {
	m := map[string]string{}
	matches, _ := filepath.Glob(filepath.Join(dir, name+"*", "*.log"))
	for _, p := range matches {
		if rel, err := filepath.Rel(dir, p); err == nil {
			m[strings.TrimSuffix(filepath.Base(p), ".log")+" ("+filepath.Base(filepath.Dir(p))+")"] = rel
		}
	}
	return m
}

func skipReason(s scenario.Scenario, bins topo.Binaries, redisURL string) string {
	switch {
	case s.NeedsPrivateRedis && bins.Redis == "":
		return "needs redis-server on PATH (it stops and restarts Redis); install it: apt-get install redis-server"
	case s.NeedsRedis() && bins.Redis == "" && redisURL == "":
		return "needs redis-server on PATH or --redis-url"
	case s.Spec.Gateway != "" && bins.DemoApp == "":
		return "needs demoapp beside samlsp in --bin-dir (go build ./cmd/demoapp)"
	case s.Spec.Gateway == topo.GatewayForwardAuth && bins.Nginx == "":
		return "needs nginx (apt-get install -y nginx)"
	}
	return ""
}

// notRun says why a scenario cannot run here: skipped, with the reason,
// or, under CI=true for the forward-auth scenario (nginx is part of CI's
// image), failed: there a missing tool is a failure, not a quiet gap in
// the matrix.
func notRun(s scenario.Scenario, bins topo.Binaries, redisURL string) (skipped, failed string) {
	reason := skipReason(s, bins, redisURL)
	if reason != "" && os.Getenv("CI") == "true" && s.Spec.Gateway == topo.GatewayForwardAuth {
		return "", "not run: " + reason + " (CI=true: this scenario must run)"
	}
	return reason, ""
}

// driveTarget runs the load against a topology the lab did not start.
func driveTarget(ctx context.Context, o *runOptions, lo load.Options, bars *progress, run *results.Run) error {
	t := load.Target{PublicURL: strings.TrimSuffix(o.target, "/")}
	if o.caFile != "" {
		pool, err := loadCAFile(o.caFile)
		if err != nil {
			return err
		}
		t.RootCAs = pool
	}
	rs := results.Scenario{Name: "target", Description: "Logins driven at " + o.target + ", a topology samllab did not start.",
		Strategy: "as deployed", Topology: "as deployed at " + o.target + "; replicas are named by their X-Samlha-Instance header",
		Expect: "Whatever the deployment does: compare with the matrix."}
	bar := bars.Add("target", o.logins)
	lo.OnDone = bar.Done
	out := load.Drive(ctx, t, lo, nil)
	load.Summarize(&rs, out, lo, nil, nil)
	bar.Finish(rs.Logins)
	run.Scenarios = append(run.Scenarios, rs)
	if rs.Logins.Tried > 0 && rs.Logins.Succeeded == 0 && rs.Logins.Failed["transport-error"] == rs.Logins.Tried {
		return fmt.Errorf("no login reached %s (transport errors only): is the topology up?", o.target)
	}
	return nil
}

func hostInfo() map[string]string {
	h := map[string]string{"cpus": fmt.Sprint(runtime.NumCPU()), "os": runtime.GOOS + "/" + runtime.GOARCH, "go": runtime.Version()}
	if name, err := os.Hostname(); err == nil {
		h["hostname"] = name
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				h["commit"] = s.Value
			}
		}
	}
	if _, ok := h["commit"]; !ok {
		if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
			h["commit"] = strings.TrimSpace(string(out))
		}
	}
	return h
}
