package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/samlha/samlha/cmd/internal/cli"
	"github.com/samlha/samlha/cmd/samllab/internal/report"
	"github.com/samlha/samlha/cmd/samllab/internal/results"
	"github.com/samlha/samlha/cmd/samllab/internal/scenario"
	"github.com/samlha/samlha/cmd/samllab/internal/topo"
)

// runUp starts one topology on the usual local ports and keeps it running
// until Ctrl-C, so a person can log in with a real browser.
func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("samllab up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	replicas := fs.Int("replicas", 2, "SP replicas")
	store := fs.String("store", "redis", "where login state lives: memory, redis or stateless")
	stickiness := fs.String("stickiness", "off", "the proxy's stickiness: off (round robin) or duration")
	fixed := fs.Bool("fixed-ports", true, "use the usual ports (IdP 9000, proxy 8080, admin 8090, replicas 8081...); false picks free ones")
	binDir := fs.String("bin-dir", "", "directory with prebuilt samlsp, stickyproxy and devidp (default: build them)")
	redisURL := fs.String("redis-url", "", "use this Redis instead of a private redis-server")
	out := fs.String("out", "", "directory for keys and logs (default: a new one under ./samllab-runs/)")
	if err := cli.Parse(fs, args, "SAMLLAB_UP", summary); err != nil {
		return err
	}
	var p cli.Problems
	if *replicas < 1 || *replicas > 9 {
		p.Addf("--replicas must be 1 to 9")
	}
	switch *store {
	case "memory", "redis", "stateless":
	default:
		p.Addf("--store %q: want memory, redis or stateless", *store)
	}
	if *stickiness != "off" && *stickiness != "duration" {
		p.Addf("--stickiness %q: want off or duration", *stickiness)
	}
	if err := p.Err(); err != nil {
		return err
	}
	ctx, stop := cli.SignalContext(ctx)
	defer stop()
	if *out == "" {
		*out = filepath.Join("samllab-runs", "up-"+time.Now().Format("20060102-150405"))
	}
	dir, _ := filepath.Abs(*out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var bins topo.Binaries
	var err error
	if *binDir != "" {
		bins, err = topo.Find(*binDir)
	} else {
		fmt.Fprintln(stdout, "building samlsp, stickyproxy and devidp ...")
		bins, err = topo.Build(ctx, filepath.Join(dir, "bin"))
	}
	if err != nil {
		return err
	}
	env, err := topo.NewEnv(dir, bins, *redisURL, nil)
	if err != nil {
		return err
	}
	// Plain http on 127.0.0.1, so an ordinary browser can use it without
	// trusting a CA or resolving the lab's names.
	t, err := topo.Start(ctx, env, topo.Spec{Name: "up", Replicas: *replicas, Store: *store, Stickiness: *stickiness, FixedPorts: *fixed})
	if err != nil {
		if *fixed {
			err = fmt.Errorf("%w\n(if a port is taken, run with --fixed-ports=false)", err)
		}
		return err
	}
	defer t.Stop()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nUp: %d replicas, store %s, proxy stickiness %s.\n\n", *replicas, *store, *stickiness)
	fmt.Fprintf(tw, "Open\t%s/app\t(log in as alice / alice-password or bob / bob-password)\n", t.PublicURL)
	fmt.Fprintf(tw, "IdP\t%s\n", t.IdPURL)
	for _, r := range t.Replicas {
		fmt.Fprintf(tw, "%s\t%s\t(direct; every reply says X-Samlha-Instance)\n", r.ID, r.URL)
	}
	if t.AdminTokenFile != "" {
		fmt.Fprintf(tw, "proxy admin\t%s/targets\t(send Authorization: Bearer <the token in %s>)\n", t.AdminURL, t.AdminTokenFile)
	} else {
		fmt.Fprintf(tw, "proxy admin\t%s/targets\n", t.AdminURL)
	}
	fmt.Fprintf(tw, "logs\t%s\n", t.Dir)
	tw.Flush()
	fmt.Fprintln(stdout, "\nCtrl-C stops everything.")
	select {
	case <-ctx.Done():
	case <-t.Proxy.Exited():
		return errors.New("the proxy exited; see its log")
	}
	fmt.Fprintln(stdout, "stopping ...")
	return nil
}

func listScenarios(stdout io.Writer) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tSTRATEGY\tWHAT IT SHOWS")
	for _, s := range scenario.All() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.ID(), s.Strategy, s.Description)
	}
	return tw.Flush()
}

func runReport(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("samllab report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "results.json to render (required)")
	out := fs.String("out", "", "report.html to write (default: beside --in)")
	if err := cli.Parse(fs, args, "SAMLLAB_REPORT", summary); err != nil {
		return err
	}
	if *in == "" {
		return errors.New("--in is required")
	}
	run, err := results.Read(*in)
	if err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Join(filepath.Dir(*in), "report.html")
	}
	if err := writeReport(*out, run); err != nil {
		return err
	}
	report.Table(stdout, run)
	fmt.Fprintf(stdout, "\nreport: %s\n", *out)
	return nil
}

func loadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", path)
	}
	return pool, nil
}
