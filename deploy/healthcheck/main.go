// Command healthcheck probes one URL and exits 0 when it answers 2xx, 1
// otherwise. It is the container health check of samlha's image: the
// runtime image (distroless) has no shell, curl or wget, so docker-compose's
// healthcheck runs this instead:
//
//	healthcheck http://127.0.0.1:8081/readyz
//
// It follows no redirects (a redirect from a health path is a fault) and
// prints the status line or the error, which Docker keeps in the container's
// health log (docker inspect).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "limit on the whole request")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: healthcheck [--timeout 2s] URL\nexits 0 when URL answers 2xx, 1 otherwise")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "healthcheck: %q is not an absolute http(s) URL\n", fs.Arg(0))
		return 2
	}
	if err := check(u.String(), *timeout); err != nil {
		fmt.Fprintf(stderr, "healthcheck: %s: %v\n", u, err)
		return 1
	}
	fmt.Fprintf(stdout, "healthcheck: %s: ok\n", u)
	return 0
}

func check(target string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %s: %s", resp.Status, body)
	}
	return nil
}
