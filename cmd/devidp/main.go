// Command devidp is samlha's development SAML identity provider: crewjam's
// samlidp with seeded users, a key pair kept across restarts, and SPs
// registered from their metadata URLs. See sp/devidp.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/samlha/samlha/cmd/internal/cli"
	"github.com/samlha/samlha/sp/devidp"
)

const summary = `devidp: a development SAML identity provider (crewjam's samlidp) for samlha.

It signs in seeded users with a login form, and trusts the SPs whose metadata
URLs --sp-metadata names: it fetches each one, retrying until the SP answers
(SPs may start after the IdP), and reports ready on /readyz once all are in.
Its signing key and certificate are generated into --data-dir on first start
and reused afterwards, so metadata an SP fetched earlier stays valid.

Usage:
  devidp [flags]

Example (an IdP for two samlsp replicas on :8081 and :8082):
  devidp --sp-metadata http://127.0.0.1:8081/saml/metadata \
         --sp-metadata http://127.0.0.1:8082/saml/metadata
  then point each SP at http://127.0.0.1:9000/metadata.

Users (unless --users or --users-file replaces them):
  alice / alice-password   alice@example.com   groups: staff
  bob   / bob-password     bob@example.com     groups: staff, admins

Endpoints: /metadata, /sso, /slo, /login, /logout (samlidp's), /healthz,
/readyz, /metrics. samlidp's unauthenticated admin API (/services, /users,
/sessions, /shortcuts) is not exposed.

For development and tests only: passwords are hashed at bcrypt's minimum
cost (--bcrypt-cost), and anyone who can reach it can sign in as the seeded
users.
`

// shutdownGrace is how long in-flight requests get to finish on SIGTERM.
const shutdownGrace = 5 * time.Second

func main() {
	ctx, stop := cli.SignalContext(context.Background())
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	stop()
	cli.Exit("devidp", err)
}

// options are the parsed flags.
type options struct {
	listen, publicURL, dataDir string
	users, usersFile           string
	bcryptCost                 int
	spMetadata                 cli.StringList
	registerTimeout            time.Duration
	sessionLifetime            time.Duration
	logFormat, logLevel        string
}

// parseFlags parses args and the environment into options, and checks them,
// reporting every problem at once.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("devidp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:9000", "`address` to listen on (host:port)")
	fs.StringVar(&o.publicURL, "public-url", "http://127.0.0.1:9000", "base `URL` at which browsers and SPs reach the IdP;\nits metadata is <public-url>/metadata")
	fs.StringVar(&o.dataDir, "data-dir", "./devidp-data", "`directory` for the IdP's key and certificate ("+devidp.KeyFile+", "+devidp.CertFile+"),\ngenerated on first start and reused afterwards")
	fs.StringVar(&o.users, "users", "", "`users`, replacing the defaults: name:password[:email[:group,group...]],\nseparated by ';' or newlines (e.g. 'carol:carol-pw:carol@example.com:staff,admins;dave:dave-pw')")
	fs.StringVar(&o.usersFile, "users-file", "", "JSON `file` of users, replacing the defaults:\n[{\"name\":\"carol\",\"password\":\"carol-pw\",\"email\":\"carol@example.com\",\"groups\":[\"staff\"]}]")
	fs.IntVar(&o.bcryptCost, "bcrypt-cost", devidp.DefaultBcryptCost, "bcrypt cost of the password hashes. The default, bcrypt's minimum, is a\ndevelopment-only choice so a 2-core lab can run hundreds of logins a second\n(samlidp's usual cost 10 spends ~60 ms of CPU per login)")
	fs.Var(&o.spMetadata, "sp-metadata", "metadata `URL` of an SP to trust (repeatable, or comma-separated);\nfetched until the SP answers")
	fs.DurationVar(&o.registerTimeout, "register-timeout", 2*time.Minute, "how long to keep trying to fetch the --sp-metadata URLs; when it passes\nwith an SP still missing, devidp exits with an error naming it (0: keep trying)")
	fs.DurationVar(&o.sessionLifetime, "session-lifetime", devidp.DefaultSessionLifetime, "how long a login at the IdP lasts (the browser is not asked for its\npassword again meanwhile)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	if err := cli.Parse(fs, args, "SAMLHA_IDP", summary); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
	}

	var p cli.Problems
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		p.Addf("--listen %q: %v", o.listen, err)
	}
	if o.publicURL == "" {
		p.Addf("--public-url is empty")
	}
	if o.dataDir == "" {
		p.Addf("--data-dir is empty")
	}
	if o.bcryptCost < devidp.DefaultBcryptCost || o.bcryptCost > 31 {
		p.Addf("--bcrypt-cost %d: want %d to 31", o.bcryptCost, devidp.DefaultBcryptCost)
	}
	if o.registerTimeout < 0 {
		p.Addf("--register-timeout %s: want 0 or more", o.registerTimeout)
	}
	if o.sessionLifetime < time.Second {
		p.Addf("--session-lifetime %s: want at least 1s", o.sessionLifetime)
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		p.Addf("--log-format %q: want text or json", o.logFormat)
	}
	if _, err := cli.NewLogger(io.Discard, "text", o.logLevel); err != nil {
		p.Addf("--log-level: %v", err)
	}
	if _, err := o.loadUsers(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			p.Addf("%s", line)
		}
	}
	return o, p.Err()
}

// loadUsers returns the users from --users and --users-file together, or
// nil (the defaults) when neither is given.
func (o *options) loadUsers() ([]devidp.User, error) {
	var users []devidp.User
	var errs []error
	if o.users != "" {
		u, err := devidp.ParseUsers(o.users)
		if err != nil {
			errs = append(errs, fmt.Errorf("--users: %w", err))
		}
		users = append(users, u...)
	}
	if o.usersFile != "" {
		u, err := devidp.LoadUsersFile(o.usersFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("--users-file: %w", err))
		}
		users = append(users, u...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if users != nil {
		if err := devidp.ValidateUsers(users); err != nil {
			return nil, fmt.Errorf("--users and --users-file: %w", err)
		}
	}
	return users, nil
}

// run serves the IdP until ctx ends. ln, if not nil, is used instead of
// binding --listen (tests pass a listener on a free port).
func run(ctx context.Context, args []string, stderr io.Writer, ln net.Listener) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logger, err := cli.NewLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	users, err := o.loadUsers()
	if err != nil {
		return err
	}
	if o.bcryptCost == devidp.DefaultBcryptCost {
		logger.Warn("password hashes use bcrypt's minimum cost: fine for development and load tests, never for real passwords", "bcrypt_cost", o.bcryptCost)
	}

	idp, err := devidp.New(devidp.Config{
		PublicURL:       o.publicURL,
		DataDir:         o.dataDir,
		Users:           users,
		BcryptCost:      o.bcryptCost,
		SPMetadataURLs:  o.spMetadata,
		SessionLifetime: o.sessionLifetime,
		Logger:          logger,
	})
	if err != nil {
		return err
	}

	httpServer := &http.Server{Handler: idp, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	var srv *cli.Server
	if ln != nil {
		srv = &cli.Server{Name: "idp", Server: httpServer, Listener: ln}
	} else if srv, err = cli.Listen("idp", o.listen, httpServer); err != nil {
		return err
	}
	names := make([]string, 0, len(users))
	for _, u := range users {
		names = append(names, u.Name)
	}
	if users == nil {
		names = []string{"alice", "bob"}
	}
	logger.Info("devidp starting", "public_url", o.publicURL, "metadata", idp.MetadataURL(), "users", names, "sps", len(o.spMetadata))

	serveCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	regDone := make(chan error, 1)
	go func() {
		rctx := serveCtx
		if o.registerTimeout > 0 {
			var rcancel context.CancelFunc
			rctx, rcancel = context.WithTimeout(serveCtx, o.registerTimeout)
			defer rcancel()
		}
		err := idp.RegisterSPs(rctx)
		if err != nil && serveCtx.Err() == nil {
			// Not a shutdown: the timeout passed with SPs missing.
			err = fmt.Errorf("gave up after --register-timeout %s: %w", o.registerTimeout, err)
			logger.Error("SP metadata missing, exiting", "err", err)
			regDone <- err
			cancel()
			return
		}
		regDone <- nil
	}()

	err = cli.Serve(serveCtx, logger, shutdownGrace, srv)
	cancel()
	if regErr := <-regDone; regErr != nil && err == nil {
		err = regErr
	}
	return err
}
