package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/samlha/samlha/cmd/internal/cli"
	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/access"
	"github.com/samlha/samlha/sp/gateway"
	"github.com/samlha/samlha/sp/identity"
	"github.com/samlha/samlha/sp/keypair"
	"github.com/samlha/samlha/sp/login"
)

// gatewayOptions are the flags of gateway mode, forward-auth, IdP-initiated
// login, the SP key rollover and trusted proxies.
type gatewayOptions struct {
	upstream                  string
	publicPaths               cli.StringList
	headerPrefix              string
	passAttributes            cli.StringList
	allow                     cli.StringList
	redirectHosts             cli.StringList
	identityJWT               bool
	jwtKeys                   cli.StringList
	jwtTTL                    time.Duration
	jwtAudience               string
	allowIDPInitiated         bool
	idpInitiatedRedirects     cli.StringList
	idpInitiatedAcceptReplica bool
	spKeyNext, spCertNext     string
	sessionCacheTTL           time.Duration
	upstreamHeaderTimeout     time.Duration
}

func (g *gatewayOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&g.upstream, "upstream", "", "gateway mode: the application to protect (http://host:port); every path but /saml/*, /healthz, /readyz\nand --public-path needs a session and is proxied there with the identity headers")
	fs.Var(&g.publicPaths, "public-path", "gateway: a path that needs no session (repeatable): a prefix (/static/) or a pattern with * ? [ (/*.ico);\nit gets no identity headers")
	fs.StringVar(&g.headerPrefix, "identity-header-prefix", identity.DefaultHeaderPrefix, "prefix of the identity headers (<prefix>Name-Id, <prefix>User, <prefix>Jwt-Assertion);\nevery request header with it is removed from every client request first")
	fs.Var(&g.passAttributes, "pass-attribute", "send a session attribute to the upstream (and in /saml/auth answers) as a header: attribute=Header-Name,\ne.g. mail=X-Email (repeatable); several values are joined with \", \"; the header is stripped from client requests")
	fs.Var(&g.allow, "allow", "admit only users with an attribute value: attribute=value, or /prefix:attribute=value for paths under /prefix\n(repeatable; the longest matching prefix's rules apply, any one admits; others get 403, cause forbidden)")
	fs.Var(&g.redirectHosts, "allowed-redirect-hosts", "hosts an absolute return URL may name (/saml/login?rd=, forward-auth): host, host:port or .domain for subdomains;\nthe --root-url host is always allowed")
	fs.BoolVar(&g.identityJWT, "identity-jwt", false, "also send a short-lived signed JWT of the identity in <prefix>Jwt-Assertion; public keys at /saml/jwks.json")
	fs.Var(&g.jwtKeys, "identity-jwt-key", "identity JWT key ring: PEM files (ECDSA P-256 for ES256 or Ed25519 for EdDSA) or directories of *.pem\n(read newest name first); the first key signs, all are published (repeatable; create with: samlsp jwtkey)")
	fs.DurationVar(&g.jwtTTL, "identity-jwt-ttl", 2*time.Minute, "lifetime of each identity JWT")
	fs.StringVar(&g.jwtAudience, "identity-jwt-audience", "", "aud claim of the identity JWT (default: the --upstream URL, or the --root-url in forward-auth only mode)")
	fs.BoolVar(&g.allowIDPInitiated, "allow-idp-initiated", false, "accept IdP-initiated logins (needs a shared store: their only replay defence is the shared replay record)")
	fs.Var(&g.idpInitiatedRedirects, "idp-initiated-redirect", "IdP-initiated login: path prefixes the RelayState may name as the landing page (repeatable); anything else lands on /")
	fs.BoolVar(&g.idpInitiatedAcceptReplica, "idp-initiated-accept-replica-replay", false, "allow --allow-idp-initiated with a per-replica store (memory, stateless), accepting that a response\nreplayed to another replica logs in once more there")
	fs.DurationVar(&g.upstreamHeaderTimeout, "upstream-header-timeout", gateway.DefaultUpstreamHeaderTimeout, "gateway mode: how long to wait for the upstream's response headers; past it the client gets 504 (streams send theirs at once)")
	fs.DurationVar(&g.sessionCacheTTL, "session-cache-ttl", sp.DefaultSessionCacheTTL, "with --store redis: serve a session from this replica's memory for up to this long before reading it\nfrom the store again (0: off; at most 1m). A logout on any replica reaches every replica's memory at once\n(Redis pub/sub, milliseconds); while that channel is down, sessions are read from the store")
	fs.StringVar(&g.spKeyNext, "sp-key-next", "", "SP key rollover: the next PEM private key, used to decrypt responses encrypted to --sp-cert-next")
	fs.StringVar(&g.spCertNext, "sp-cert-next", "", "SP key rollover: the next certificate, published in the metadata beside --sp-cert (which still signs)")
}

// cacheTTL maps --session-cache-ttl to the library's field: 0 turns the
// cache off (negative there), the default leaves the choice to the
// library (no cache where the store gains nothing from one).
func (g *gatewayOptions) cacheTTL() time.Duration {
	switch g.sessionCacheTTL {
	case 0:
		return -1
	case sp.DefaultSessionCacheTTL:
		return 0
	}
	return g.sessionCacheTTL
}

// build parses the flags of gateway mode, forward-auth, IdP-initiated
// login and the key rollover into the sp.Config fields they set, adding
// every parse problem to p. Whether the result makes sense is the SP's
// validator's to say.
func (g *gatewayOptions) build(p *cli.Problems) *sp.Config {
	c := &sp.Config{Gateway: &sp.Gateway{HeaderPrefix: g.headerPrefix, PublicPaths: access.PublicPaths(g.publicPaths), AllowedRedirectHosts: g.redirectHosts,
		UpstreamHeaderTimeout: g.upstreamHeaderTimeout}, SessionCacheTTL: g.cacheTTL()}
	if g.upstream != "" {
		u, err := url.Parse(g.upstream)
		if err != nil {
			p.Addf("--upstream %q: %v", g.upstream, err)
		} else {
			c.Gateway.Upstream = u
		}
	}
	for _, s := range g.passAttributes {
		a, err := identity.ParsePassAttribute(s)
		if err != nil {
			p.Addf("--pass-attribute %v", err)
			continue
		}
		c.Gateway.PassAttributes = append(c.Gateway.PassAttributes, a)
	}
	for _, s := range g.allow {
		r, err := access.ParseRule(s)
		if err != nil {
			p.Addf("--allow %v", err)
			continue
		}
		c.Gateway.Allow = append(c.Gateway.Allow, r)
	}
	switch {
	case g.identityJWT && len(g.jwtKeys) == 0:
		p.Addf("--identity-jwt needs --identity-jwt-key (the same key ring on every replica; create a key with: samlsp jwtkey --out FILE)")
	case !g.identityJWT && len(g.jwtKeys) > 0:
		p.Addf("--identity-jwt-key is given but --identity-jwt is off")
	case g.identityJWT:
		keys, err := identity.LoadJWTKeys(g.jwtKeys)
		if err != nil {
			p.Addf("--identity-jwt-key: %v", err)
		}
		c.Gateway.JWT = &identity.JWT{Keys: keys, TTL: g.jwtTTL, Audience: g.jwtAudience}
	}
	if g.allowIDPInitiated {
		c.IDPInitiated = &login.IDPInitiated{RedirectPrefixes: g.idpInitiatedRedirects, AcceptLocalReplay: g.idpInitiatedAcceptReplica}
	} else if len(g.idpInitiatedRedirects) > 0 || g.idpInitiatedAcceptReplica {
		p.Addf("--idp-initiated-redirect and --idp-initiated-accept-replica-replay need --allow-idp-initiated")
	}
	if (g.spKeyNext == "") != (g.spCertNext == "") {
		p.Addf("--sp-key-next and --sp-cert-next: give both or neither")
	} else if g.spKeyNext != "" {
		k, cert, err := keypair.Load(g.spKeyNext, g.spCertNext)
		if err != nil {
			p.Addf("--sp-key-next/--sp-cert-next: %v", err)
		} else {
			c.NextKey, c.NextCertificate = k, cert
		}
	}
	return c
}

// jwtkey writes a new identity JWT signing key.
func jwtkey(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("samlsp jwtkey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "file to write the PEM private key to (required; e.g. ./jwt-keys/2026-11-30.pem)")
	alg := fs.String("alg", "ES256", "ES256 (ECDSA P-256) or EdDSA (Ed25519)")
	if err := cli.Parse(fs, args, "SAMLHA_JWTKEY", "samlsp jwtkey: write a key for --identity-jwt-key. Put it in the key ring directory of every replica;\nthe newest name signs, every key is published at /saml/jwks.json.\n"); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("--out is required")
	}
	var k crypto.Signer
	var err error
	switch *alg {
	case "ES256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		return fmt.Errorf("--alg %q: want ES256 or EdDSA", *alg)
	}
	if err != nil {
		return err
	}
	b, err := identity.MarshalJWTKey(k)
	if err != nil {
		return err
	}
	// The key ring's directory is made if missing, readable by its owner
	// only (as keygen does for the SP's key).
	if err := os.MkdirAll(filepath.Dir(*out), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%s)\n", *out, *alg)
	return nil
}
