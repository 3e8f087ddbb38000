// Command samllab runs samlha's lab: it starts topologies of real processes
// (a development IdP, SP replicas, a sticky proxy, Redis; for the gateway,
// demoapp and nginx) on loopback, drives scripted logins through them,
// injects the faults that matter, and reports what each strategy did to
// logins, side by side.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/samlha/samlha/cmd/internal/cli"
)

const summary = `samllab: reproduce and compare what load balancers do to SAML logins, on real processes.

Usage:
  samllab [run] [flags]        run the scenario matrix (the default), write results.json and report.html
  samllab run --target URL     drive a topology samllab did not start (e.g. the docker-compose stack)
  samllab up [flags]           start one topology and keep it running, to log in with a real browser
  samllab scenarios            list the scenarios
  samllab report --in FILE     render report.html (and the table) again from a results.json

Examples:
  go run ./cmd/samllab                                  # the whole matrix, under two minutes on 2 cores
  go run ./cmd/samllab run --scenarios roundrobin-memory,sticky-lax-cookie --logins 300
  go run ./cmd/samllab run --scenarios sticky-lax-cookie --chromium 3   # and real Chromium beside it
  go run ./cmd/samllab up --replicas 2 --store redis    # then open the URL it prints
  go run ./cmd/samllab up --mode gateway                # an app with no SAML code behind samlsp gateways
`

func main() {
	cli.Exit("samllab", run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runMatrix(ctx, args, stdout, stderr)
	case "up":
		return runUp(ctx, args, stdout, stderr)
	case "scenarios":
		return listScenarios(stdout)
	case "report":
		return runReport(args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, summary)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n\n%s", cmd, summary)
	}
}
