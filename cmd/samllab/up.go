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

// upOptions are samllab up's flags.
type upOptions struct {
	mode, store, stickiness, binDir, redisURL, out string
	replicas                                       int
	fixed                                          bool
	gateway                                        string // topo's gateway mode for mode
}

// parseUpFlags parses and checks samllab up's flags, listing every problem
// at once.
func parseUpFlags(args []string, stderr io.Writer) (upOptions, error) {
	var o upOptions
	fs := flag.NewFlagSet("samllab up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.mode, "mode", "sp", "what the replicas serve: sp (samlsp's own demo page), gateway (samlsp --upstream in front of demoapp,\nan app with no SAML code that verifies the identity JWT) or forward-auth (nginx serves demoapp and asks samlsp\nwith auth_request; needs nginx and 3 replicas)")
	fs.IntVar(&o.replicas, "replicas", 0, "SP replicas (default 2; 3 with --mode forward-auth, which needs exactly 3)")
	fs.StringVar(&o.store, "store", "redis", "where login state lives: memory, redis or stateless")
	fs.StringVar(&o.stickiness, "stickiness", "off", "the proxy's stickiness: off (round robin) or duration")
	fs.BoolVar(&o.fixed, "fixed-ports", true, "use the usual ports (IdP 9000, proxy 8080, admin 8090, replicas 8081..., demoapp 3000); false picks free ones")
	fs.StringVar(&o.binDir, "bin-dir", "", "directory with prebuilt samlsp, stickyproxy, devidp and demoapp (default: build them)")
	fs.StringVar(&o.redisURL, "redis-url", "", "use this Redis instead of a private redis-server")
	fs.StringVar(&o.out, "out", "", "directory for keys and logs (default: a new one under ./samllab-runs/)")
	if err := cli.Parse(fs, args, "SAMLLAB_UP", summary); err != nil {
		return o, err
	}
	var p cli.Problems
	switch o.mode {
	case "sp":
	case "gateway":
		o.gateway = topo.GatewayProxy
	case "forward-auth":
		o.gateway = topo.GatewayForwardAuth
		if o.replicas == 0 {
			o.replicas = 3
		}
		if o.replicas != 3 || o.stickiness != "off" {
			p.Addf("--mode forward-auth runs nginx's reference config: 3 replicas (--replicas %d), no stickiness", o.replicas)
		}
	default:
		p.Addf("--mode %q: want sp, gateway or forward-auth", o.mode)
	}
	if o.replicas == 0 {
		o.replicas = 2
	}
	if o.replicas < 1 || o.replicas > 9 {
		p.Addf("--replicas must be 1 to 9")
	}
	switch o.store {
	case "memory", "redis", "stateless":
	default:
		p.Addf("--store %q: want memory, redis or stateless", o.store)
	}
	if o.stickiness != "off" && o.stickiness != "duration" {
		p.Addf("--stickiness %q: want off or duration", o.stickiness)
	}
	return o, p.Err()
}

// runUp starts one topology on the usual local ports and keeps it running
// until Ctrl-C, so a person can log in with a real browser.
func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseUpFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := cli.SignalContext(ctx)
	defer stop()
	if o.out == "" {
		o.out = filepath.Join("samllab-runs", "up-"+time.Now().Format("20060102-150405"))
	}
	dir, _ := filepath.Abs(o.out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	bins, err := upBinaries(ctx, o, stdout)
	if err != nil {
		return err
	}
	env, err := topo.NewEnv(dir, bins, o.redisURL, nil)
	if err != nil {
		return err
	}
	// Plain http on 127.0.0.1, so an ordinary browser can use it without
	// trusting a CA or resolving the lab's names.
	t, err := topo.Start(ctx, env, topo.Spec{Name: "up", Replicas: o.replicas, Store: o.store, Stickiness: o.stickiness, FixedPorts: o.fixed, Gateway: o.gateway})
	if err != nil {
		if o.fixed {
			err = fmt.Errorf("%w\n(if a port is taken, run with --fixed-ports=false)", err)
		}
		return err
	}
	defer t.Stop()
	printUp(stdout, t, o)
	select {
	case <-ctx.Done():
	case <-t.Proxy.Exited():
		return errors.New("the proxy exited; see its log")
	}
	fmt.Fprintln(stdout, "stopping ...")
	return nil
}

// upBinaries finds (--bin-dir) or builds the binaries and checks that the
// mode's are there.
func upBinaries(ctx context.Context, o upOptions, stdout io.Writer) (topo.Binaries, error) {
	var bins topo.Binaries
	var err error
	if o.binDir != "" {
		bins, err = topo.Find(o.binDir)
	} else {
		fmt.Fprintln(stdout, "building samlsp, stickyproxy, devidp and demoapp ...")
		bins, err = topo.Build(ctx, "")
	}
	if err != nil {
		return bins, err
	}
	if o.gateway != "" && bins.DemoApp == "" {
		return bins, fmt.Errorf("--mode %s needs demoapp in --bin-dir %s (go build -o %s ./cmd/demoapp)", o.mode, o.binDir, o.binDir)
	}
	if o.gateway == topo.GatewayForwardAuth && bins.Nginx == "" {
		return bins, errors.New("--mode forward-auth needs nginx (apt-get install -y nginx)")
	}
	return bins, nil
}

// printUp tells the person what is running and where to look.
func printUp(stdout io.Writer, t *topo.Topology, o upOptions) {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	switch o.gateway {
	case topo.GatewayProxy:
		fmt.Fprintf(tw, "\nUp: demoapp (no SAML code) behind %d samlsp gateways, store %s, proxy stickiness %s.\n\n", o.replicas, o.store, o.stickiness)
	case topo.GatewayForwardAuth:
		fmt.Fprintf(tw, "\nUp: nginx serving demoapp (no SAML code), auth_request to %d samlsp replicas, store %s.\n\n", o.replicas, o.store)
	default:
		fmt.Fprintf(tw, "\nUp: %d replicas, store %s, proxy stickiness %s.\n\n", o.replicas, o.store, o.stickiness)
	}
	fmt.Fprintf(tw, "Open\t%s/app\t(log in as alice / alice-password or bob / bob-password)\n", t.PublicURL)
	if o.gateway != "" {
		fmt.Fprintf(tw, "app, direct\t%s/app\t(no gateway: a forged X-Samlha-User gets 401, the JWT does not verify)\n", t.AppURL)
		fmt.Fprintf(tw, "JWKS\t%s/saml/jwks.json\t(the public keys demoapp verifies with; signing key in %s)\n", t.PublicURL, t.JWTKeyDir)
	}
	fmt.Fprintf(tw, "IdP\t%s\n", t.IdPURL)
	for _, r := range t.Replicas {
		fmt.Fprintf(tw, "%s\t%s\t(direct; every reply says X-Samlha-Instance)\n", r.ID, r.URL)
	}
	switch {
	case t.AdminURL == "":
		fmt.Fprintf(tw, "nginx config\t%s\t(deploy/nginx-forward-auth.conf on these ports)\n", filepath.Join(t.Dir, "nginx", "nginx.conf"))
	case t.AdminTokenFile != "":
		fmt.Fprintf(tw, "proxy admin\t%s/targets\t(send Authorization: Bearer <the token in %s>)\n", t.AdminURL, t.AdminTokenFile)
	default:
		fmt.Fprintf(tw, "proxy admin\t%s/targets\n", t.AdminURL)
	}
	fmt.Fprintf(tw, "logs\t%s\n", t.Dir)
	tw.Flush()
	if o.gateway != "" {
		fmt.Fprintln(stdout, "\nWhat to look at: after login, demoapp's page shows the identity headers it received (X-Samlha-User,")
		fmt.Fprintln(stdout, "X-Samlha-Name-Id, X-Email, X-Samlha-Jwt-Assertion) and whether the identity JWT verified against the JWKS,")
		fmt.Fprintln(stdout, "with its claims (as JSON with Accept: application/json). demoapp has no SAML code and keeps no user state;")
		fmt.Fprintln(stdout, "it answers with the user only when the JWT verifies.")
	}
	fmt.Fprintln(stdout, "\nCtrl-C stops everything.")
}

func listScenarios(stdout io.Writer) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tSTRATEGY\tWHAT IT SHOWS")
	for _, s := range scenario.All() {
		what := s.Description
		if s.Alone != "" {
			what += " Runs alone (whatever --parallel says): " + s.Alone + "."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.ID(), s.Strategy, what)
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
