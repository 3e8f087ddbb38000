// Command demoapp is the application samlha's gateway protects in the lab,
// the e2e tests and the benchmarks: it has no SAML code and keeps no user
// state. It shows the identity headers it received and whether the
// identity JWT in <prefix>Jwt-Assertion verifies against the gateway's
// /saml/jwks.json (with go-jose, a JOSE library independent of the one
// samlsp signs with). The only thing it keeps between requests is the
// gateway's public key set, fetched again when a token names a key it
// does not know (at most every --jwks-min-refresh).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/samlha/samlha/cmd/internal/cli"
)

const summary = `demoapp: an application with no SAML code, for samlsp's gateway mode. It shows the identity headers
it received and verifies the identity JWT against the gateway's /saml/jwks.json. It keeps no user state.

Usage:
  demoapp [flags]

Example (behind: samlsp --upstream http://127.0.0.1:3000 --identity-jwt ...):
  demoapp --listen 127.0.0.1:3000 --jwks-url http://127.0.0.1:8080/saml/jwks.json \
          --issuer http://127.0.0.1:8080 --audience http://127.0.0.1:3000

Endpoints: /healthz (alive); any other path answers with what it received, as HTML or, for
Accept: application/json, as JSON; with --require-jwt, 401 when the JWT does not verify.
The response header X-Samlha-User repeats the user the gateway named (the lab's success check).
`

func main() {
	cli.Exit("demoapp", run(context.Background(), os.Args[1:], os.Stderr))
}

type options struct {
	listen, jwksURL, issuer, audience, prefix string
	show                                      cli.StringList
	requireJWT                                bool
	minRefresh                                time.Duration
	logFormat, logLevel                       string
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("demoapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:3000", "address to serve HTTP on")
	fs.StringVar(&o.jwksURL, "jwks-url", "", "the gateway's /saml/jwks.json; empty: the JWT is not checked")
	fs.StringVar(&o.issuer, "issuer", "", "expected iss of the identity JWT: the gateway's --root-url (required with --jwks-url)")
	fs.StringVar(&o.audience, "audience", "", "expected aud of the identity JWT: this app's URL as the gateway's --upstream names it (required with --jwks-url)")
	fs.StringVar(&o.prefix, "identity-header-prefix", "X-Samlha-", "the gateway's --identity-header-prefix")
	fs.Var(&o.show, "show-header", "another header to show, e.g. X-Email (repeatable)")
	fs.BoolVar(&o.requireJWT, "require-jwt", false, "answer 401 to requests whose identity JWT does not verify")
	fs.DurationVar(&o.minRefresh, "jwks-min-refresh", 5*time.Second, "fetch the key set again at most this often (on an unknown key ID)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	if err := cli.Parse(fs, args, "SAMLHA_DEMOAPP", summary); err != nil {
		return nil, err
	}
	var p cli.Problems
	if fs.NArg() > 0 {
		p.Addf("unexpected arguments %q (flags only; see --help)", fs.Args())
	}
	if o.jwksURL != "" {
		if u, err := url.Parse(o.jwksURL); err != nil || u.Host == "" {
			p.Addf("--jwks-url %q is not an absolute URL", o.jwksURL)
		}
		if o.issuer == "" || o.audience == "" {
			p.Addf("--jwks-url needs --issuer and --audience: a token for another service must not pass")
		}
	} else if o.requireJWT {
		p.Addf("--require-jwt needs --jwks-url")
	}
	if o.minRefresh <= 0 {
		p.Addf("--jwks-min-refresh must be positive")
	}
	return o, p.Err()
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logger, err := cli.NewLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	ctx, stop := cli.SignalContext(ctx)
	defer stop()
	app := newApp(o, logger, &http.Client{Timeout: 5 * time.Second})
	srv, err := cli.Listen("public", o.listen, &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)})
	if err != nil {
		return err
	}
	logger.Info("demoapp starting", "listen", o.listen, "jwks_url", o.jwksURL)
	return cli.Serve(ctx, logger, 5*time.Second, srv)
}

type app struct {
	o      *options
	log    *slog.Logger
	client *http.Client
	keys   *keySet
	page   *template.Template
}

func newApp(o *options, log *slog.Logger, client *http.Client) *app {
	a := &app{o: o, log: log, client: client, page: template.Must(template.New("page").Parse(pageHTML))}
	if o.jwksURL != "" {
		a.keys = &keySet{url: o.jwksURL, client: client, minRefresh: o.minRefresh}
	}
	return a
}

// report is what a request shows.
type report struct {
	Path    string            `json:"path"`
	User    string            `json:"user"`
	Headers map[string]string `json:"headers"`
	JWT     string            `json:"jwt"` // verified, absent, invalid, not-checked
	Error   string            `json:"jwt_error,omitempty"`
	Claims  map[string]any    `json:"claims,omitempty"`
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"alive"}`)
		return
	}
	rep := report{Path: r.URL.Path, User: r.Header.Get(a.o.prefix + "User"), Headers: map[string]string{}}
	for k, v := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), strings.ToLower(a.o.prefix)) || slices.ContainsFunc(a.o.show, func(s string) bool { return strings.EqualFold(s, k) }) {
			rep.Headers[k] = strings.Join(v, "; ")
		}
	}
	tok := r.Header.Get(a.o.prefix + "Jwt-Assertion")
	switch {
	case a.keys == nil:
		rep.JWT = "not-checked"
	case tok == "":
		rep.JWT = "absent"
	default:
		claims, err := a.verify(r.Context(), tok)
		if err != nil {
			rep.JWT, rep.Error = "invalid", err.Error()
			a.log.Warn("identity JWT does not verify", "err", err, "path", r.URL.Path)
		} else {
			rep.JWT, rep.Claims = "verified", claims
		}
	}
	status := http.StatusOK
	if a.o.requireJWT && rep.JWT != "verified" {
		status = http.StatusUnauthorized
		rep.User = ""
	}
	if rep.User != "" {
		w.Header().Set("X-Samlha-User", rep.User)
	}
	w.Header().Set("X-Demoapp-Jwt", rep.JWT)
	w.Header().Set("Cache-Control", "no-store")
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		if err := a.page.Execute(w, rep); err != nil {
			a.log.Warn("render", "err", err)
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(rep)
}

// verify checks tok's signature against the gateway's key set, and its
// issuer, audience and times.
func (a *app) verify(ctx context.Context, tok string) (map[string]any, error) {
	parsed, err := josejwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		return nil, err
	}
	if len(parsed.Headers) != 1 || parsed.Headers[0].KeyID == "" {
		return nil, errors.New("token names no key ID")
	}
	key, err := a.keys.get(ctx, parsed.Headers[0].KeyID)
	if err != nil {
		return nil, err
	}
	var std josejwt.Claims
	all := map[string]any{}
	if err := parsed.Claims(key.Key, &std, &all); err != nil {
		return nil, err
	}
	if err := std.ValidateWithLeeway(josejwt.Expected{Issuer: a.o.issuer, AnyAudience: josejwt.Audience{a.o.audience}, Time: time.Now()}, 30*time.Second); err != nil {
		return nil, err
	}
	return all, nil
}

// keySet is the gateway's JWKS, fetched when a token names a key it does
// not hold (rotation), at most every minRefresh.
type keySet struct {
	url        string
	client     *http.Client
	minRefresh time.Duration

	mu      sync.Mutex
	set     jose.JSONWebKeySet
	fetched time.Time
}

func (k *keySet) get(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if ks := k.set.Key(kid); len(ks) == 1 {
		return ks[0], nil
	}
	if time.Since(k.fetched) < k.minRefresh {
		return jose.JSONWebKey{}, fmt.Errorf("unknown key ID %q (key set fetched %v ago)", kid, time.Since(k.fetched).Round(time.Millisecond))
	}
	// The attempt counts, not only a success: a gateway whose key set is
	// down or refused is asked at most every minRefresh, not per request.
	k.fetched = time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("fetch key set: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return jose.JSONWebKey{}, fmt.Errorf("fetch key set: %s", resp.Status)
	}
	const maxKeySet = 1 << 20
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxKeySet+1))
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("fetch key set: %w", err)
	}
	if len(body) > maxKeySet {
		return jose.JSONWebKey{}, fmt.Errorf("key set larger than %d bytes: refused", maxKeySet)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("key set: %w", err)
	}
	k.set = set
	if ks := k.set.Key(kid); len(ks) == 1 {
		return ks[0], nil
	}
	return jose.JSONWebKey{}, fmt.Errorf("unknown key ID %q", kid)
}

const pageHTML = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>demoapp</title></head>
<body>
<h1>demoapp{{if .User}}: hello, <span id="user">{{.User}}</span>{{end}}</h1>
<p>Path: <code>{{.Path}}</code>. Identity JWT: <strong>{{.JWT}}</strong>{{if .Error}} ({{.Error}}){{end}}</p>
<h2>Identity headers received</h2>
<table>{{range $k, $v := .Headers}}<tr><th>{{$k}}</th><td><code>{{$v}}</code></td></tr>{{end}}</table>
{{if .Claims}}<h2>JWT claims</h2><table>{{range $k, $v := .Claims}}<tr><th>{{$k}}</th><td><code>{{$v}}</code></td></tr>{{end}}</table>{{end}}
<p>This application has no SAML code and keeps no user state.</p>
</body></html>
`
