package simplesamltest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/samlha/samlha/sp/keypair"
	"github.com/samlha/samlha/sp/sptest/devidptest"
	"github.com/samlha/samlha/store/localproc"
)

// DefaultRoot is where Debian's simplesamlphp package installs
// SimpleSAMLphp's code (its www/ is the document root).
const DefaultRoot = "/usr/share/simplesamlphp"

// AuthSource is the name of the exampleauth:UserPass source the IdP
// authenticates its users with.
const AuthSource = "example-userpass"

// NameID formats (SAML 2.0 core, 8.3).
const (
	NameIDTransient   = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
	NameIDPersistent  = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
	NameIDEmail       = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
	NameIDUnspecified = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
)

// Packages names the Debian packages the harness needs, for messages and CI.
const Packages = "simplesamlphp php-cli php-xml"

// Timings.
const (
	startTimeout = 30 * time.Second
	startTries   = 3
	stopGrace    = 5 * time.Second
	logTailBytes = 32 << 10
)

// User is one account of the IdP's exampleauth:UserPass source. The IdP
// releases the attributes uid (Name), mail and eduPersonAffiliation.
type User struct {
	Name, Password string
	Mail           string
	Affiliations   []string
}

// Users returns the default users: alice / alice-password (staff, member)
// and bob / bob-password (employee, member, staff), the accounts devidp has.
func Users() []User {
	return []User{
		{Name: "alice", Password: "alice-password", Mail: "alice@example.com", Affiliations: []string{"member", "staff"}},
		{Name: "bob", Password: "bob-password", Mail: "bob@example.com", Affiliations: []string{"employee", "member", "staff"}},
	}
}

// Config configures an IdP. The zero value is Debian's SimpleSAMLphp with
// the default users.
type Config struct {
	// Root is SimpleSAMLphp's installation (default DefaultRoot).
	Root string
	// PHP is the php command line binary (default "php" from PATH).
	PHP string
	// Users of the IdP (default Users()).
	Users []User
	// WantAuthnRequestsSigned sets validate.authnrequest in the hosted
	// IdP's metadata: the IdP refuses unsigned AuthnRequests from SPs whose
	// own entry does not say otherwise, and its published metadata says
	// WantAuthnRequestsSigned="true".
	WantAuthnRequestsSigned bool
}

func (c Config) withDefaults() Config {
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	if c.PHP == "" {
		c.PHP = "php"
	}
	if c.Users == nil {
		c.Users = Users()
	}
	return c
}

// SPConfig is what the IdP's entry for one SP sets on top of the SP's
// metadata (saml20-sp-remote options). The zero value is SimpleSAMLphp's
// defaults: responses and assertions signed, nothing encrypted, logout
// messages neither signed nor required to be, and the NameID format the
// SP's metadata lists first.
type SPConfig struct {
	// ValidateAuthnRequest: refuse AuthnRequests from this SP that are not
	// signed (validate.authnrequest), whatever its metadata says.
	ValidateAuthnRequest bool
	// SignLogout: sign the LogoutRequests and LogoutResponses sent to this
	// SP (sign.logout).
	SignLogout bool
	// ValidateLogout: refuse unsigned LogoutRequests and LogoutResponses
	// from this SP (validate.logout).
	ValidateLogout bool
	// EncryptAssertion: encrypt assertions to the SP's certificate
	// (assertion.encryption).
	EncryptAssertion bool
	// NameIDFormat the SP gets when its AuthnRequest asks for none the IdP
	// can make (NameIDFormat); "" keeps the first one of its metadata.
	NameIDFormat string
	// UnsignedResponse and UnsignedAssertion turn off the signature of the
	// Response and of the Assertion (saml20.sign.response,
	// saml20.sign.assertion).
	UnsignedResponse, UnsignedAssertion bool
}

// IdP is a SimpleSAMLphp IdP serving one test.
type IdP struct {
	// URL is its base URL, "http://127.0.0.1:PORT".
	URL string
	// EntityID is its entity ID, which is also the URL of its metadata:
	// give it to samlsp's --idp-metadata-url.
	EntityID, MetadataURL string
	// Addr is the address it listens on, "127.0.0.1:PORT".
	Addr string
	// Dir holds its configuration (SIMPLESAMLPHP_CONFIG_DIR is Dir/config),
	// metadata, key, sessions and log.
	Dir string
	// Users are its accounts.
	Users []User

	cfg     Config
	proc    *localproc.Proc
	salt    string
	adminPW string

	mu      sync.Mutex // config.json and the SP files
	trusted []string   // trusted.url.domains: the registered SPs' host:port
}

// Available reports why SimpleSAMLphp cannot run here, or nil: php must be
// on PATH with the DOM extension, and SimpleSAMLphp installed at cfg.Root.
func Available(cfg Config) error {
	cfg = cfg.withDefaults()
	php, err := exec.LookPath(cfg.PHP)
	if err != nil {
		return fmt.Errorf("%s is not on PATH (apt-get install %s)", cfg.PHP, Packages)
	}
	if _, err := os.Stat(filepath.Join(cfg.Root, "www", "saml2", "idp", "SSOService.php")); err != nil {
		return fmt.Errorf("SimpleSAMLphp is not installed at %s (apt-get install %s)", cfg.Root, Packages)
	}
	cmd := exec.Command(php, "-r", `exit(extension_loaded("dom") && extension_loaded("openssl") ? 0 : 3);`)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s lacks the dom or openssl extension SimpleSAMLphp needs (apt-get install %s): %v %s", php, Packages, err, out)
	}
	return nil
}

// inCI reports whether the test runs in CI, where a missing tool is a
// failure rather than a reason to skip.
func inCI() bool { return os.Getenv("CI") == "true" }

// skipOrFail skips the test outside CI and fails it under CI=true, with
// the same reason.
func skipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		tb.Fatalf("%s (CI=true: this must not be skipped)", msg)
	}
	tb.Skip(msg)
}

// Require skips the test (fails it under CI=true) when SimpleSAMLphp
// cannot run here. Start calls it; call it first to skip before starting
// anything else.
func Require(tb testing.TB, cfg Config) {
	tb.Helper()
	if err := Available(cfg); err != nil {
		skipOrFail(tb, "SimpleSAMLphp: %v", err)
	}
}

// Start serves a SimpleSAMLphp IdP made from cfg on a loopback port until
// the test ends, and waits until it serves its metadata. When the test
// fails, the server's log (SimpleSAMLphp's debug log, PHP's errors, the
// request log) is written to the test log.
func Start(tb testing.TB, cfg Config) *IdP {
	tb.Helper()
	cfg = cfg.withDefaults()
	Require(tb, cfg)
	idp := &IdP{Dir: tb.TempDir(), Users: cfg.Users, cfg: cfg, salt: randomHex(tb, 16), adminPW: randomHex(tb, 16)}
	if err := idp.writeStatic(tb); err != nil {
		tb.Fatalf("SimpleSAMLphp configuration: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var buildErr error
	p, _, err := localproc.Launch(ctx, 1, startTries, func(ports []int) (*localproc.Proc, []string) {
		idp.setPort(ports[0])
		if err := idp.writeConfig(); err != nil {
			buildErr = err
		}
		return &localproc.Proc{
			Name:    "simplesamlphp",
			Path:    cfg.PHP,
			Args:    []string{"-d", "display_errors=stderr", "-d", "error_reporting=" + phpErrorReporting, "-S", idp.Addr, "-t", filepath.Join(cfg.Root, "www")},
			LogPath: idp.LogPath(),
			Dir:     idp.Dir,
			Env:     idp.env(),
		}, nil
	}, func(_ *localproc.Proc, _ []int) func(context.Context) error {
		if buildErr != nil {
			return func(context.Context) error { return backoff.Permanent(buildErr) }
		}
		return idp.probe
	})
	if err != nil {
		tb.Fatalf("starting SimpleSAMLphp: %v", err)
	}
	idp.proc = p
	tb.Cleanup(func() {
		p.Stop(stopGrace)
		if tb.Failed() {
			tb.Logf("SimpleSAMLphp at %s, end of its log %s:\n%s", idp.URL, idp.LogPath(), p.LogTail(logTailBytes))
		}
	})
	return idp
}

// phpErrorReporting leaves out the deprecation notices PHP 8.2 prints for
// SimpleSAMLphp 1.19's code on every request.
const phpErrorReporting = "E_ALL & ~E_DEPRECATED & ~E_STRICT"

func (idp *IdP) setPort(port int) {
	idp.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	idp.URL = "http://" + idp.Addr
	idp.EntityID = idp.URL + "/saml2/idp/metadata.php"
	idp.MetadataURL = idp.EntityID
}

// probe succeeds when the IdP serves its metadata under its entity ID.
func (idp *IdP) probe(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, idp.MetadataURL, nil)
	if err != nil {
		return backoff.Permanent(err)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", idp.MetadataURL, resp.Status)
	}
	if !strings.Contains(string(body), `entityID="`+idp.EntityID+`"`) {
		return fmt.Errorf("GET %s: the metadata does not name entity %s", idp.MetadataURL, idp.EntityID)
	}
	return nil
}

// LogPath is the file the server's stderr goes to.
func (idp *IdP) LogPath() string { return filepath.Join(idp.Dir, "simplesamlphp.log") }

// Log returns the end of the server's log.
func (idp *IdP) Log() string { return idp.proc.LogTail(logTailBytes) }

// Metadata fetches the IdP's metadata XML.
func (idp *IdP) Metadata(tb testing.TB) []byte {
	tb.Helper()
	resp, err := http.Get(idp.MetadataURL)
	if err != nil {
		tb.Fatalf("IdP metadata: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("IdP metadata: %s %v", resp.Status, err)
	}
	return b
}

// LoginURL is where an IdP-initiated login to the SP spEntityID starts
// (saml2/idp/SSOService.php?spentityid=...); relayState, if not empty, is
// sent to the SP as the RelayState.
func (idp *IdP) LoginURL(spEntityID, relayState string) string {
	q := url.Values{"spentityid": {spEntityID}}
	if relayState != "" {
		q.Set("RelayState", relayState)
	}
	return idp.URL + "/saml2/idp/SSOService.php?" + q.Encode()
}

// LogoutURL is where a logout started at the IdP begins
// (saml2/idp/SingleLogoutService.php?ReturnTo=...): the IdP logs the user
// out of every SP of the session, then sends the browser to returnTo, which
// must be on a registered SP's host (trusted.url.domains) or the IdP's.
func (idp *IdP) LogoutURL(returnTo string) string {
	return idp.URL + "/saml2/idp/SingleLogoutService.php?" + url.Values{"ReturnTo": {returnTo}}.Encode()
}

// AuthSourceURL is SimpleSAMLphp's test page of the IdP's auth source: to
// a browser with a session at the IdP it shows the user's attributes; to
// one without, the login form. Tests use it to see whether a logout ended
// the IdP's session, without going through an SP.
func (idp *IdP) AuthSourceURL() string {
	return idp.URL + "/module.php/core/authenticate.php?" + url.Values{"as": {AuthSource}}.Encode()
}

// LoginFormPath is the path of SimpleSAMLphp's login form
// (exampleauth:UserPass: inputs username and password, and the hidden
// AuthState).
const LoginFormPath = "/module.php/core/loginuserpass.php"

// RegisterSP adds the SP described by metadata (an EntityDescriptor with an
// SPSSODescriptor, as samlsp serves at /saml/metadata) to the IdP, read by
// SimpleSAMLphp's metadata parser (see ParseSPMetadata), with sp's settings
// on top, and returns its entity ID. Registering an entity ID again
// replaces it. The IdP reads its metadata on every request: no restart.
func (idp *IdP) RegisterSP(tb testing.TB, metadata []byte, sp SPConfig) string {
	tb.Helper()
	md, err := idp.ParseSPMetadata(metadata)
	if err != nil {
		tb.Fatalf("SimpleSAMLphp cannot read the SP metadata: %v\n%s", err, metadata)
	}
	entry := md.Raw
	entry["assertion.encryption"] = sp.EncryptAssertion
	entry["sign.logout"] = sp.SignLogout
	entry["validate.logout"] = sp.ValidateLogout
	entry["saml20.sign.response"] = !sp.UnsignedResponse
	entry["saml20.sign.assertion"] = !sp.UnsignedAssertion
	if sp.ValidateAuthnRequest {
		entry["validate.authnrequest"] = true
	}
	if sp.NameIDFormat != "" {
		entry["NameIDFormat"] = sp.NameIDFormat
	}
	var hosts []string
	for _, ep := range slices.Concat(md.AssertionConsumerService, md.SingleLogoutService) {
		if u, err := url.Parse(ep.Location); err == nil && u.Host != "" {
			hosts = append(hosts, u.Host)
		}
	}
	if err := idp.writeSP(md.EntityID, entry, hosts); err != nil {
		tb.Fatalf("registering SP %s: %v", md.EntityID, err)
	}
	return md.EntityID
}

// RegisterSPFromURL fetches the SP's metadata from metadataURL (samlsp's
// /saml/metadata) and registers it (RegisterSP).
func (idp *IdP) RegisterSPFromURL(tb testing.TB, metadataURL string, sp SPConfig) string {
	tb.Helper()
	return idp.RegisterSP(tb, FetchMetadata(tb, metadataURL), sp)
}

// FetchMetadata GETs metadataURL and returns the body; anything but 200 is
// fatal.
func FetchMetadata(tb testing.TB, metadataURL string) []byte {
	tb.Helper()
	resp, err := http.Get(metadataURL)
	if err != nil {
		tb.Fatalf("fetching metadata: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		tb.Fatalf("fetching metadata %s: %v", metadataURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("fetching metadata %s: %s\n%s", metadataURL, resp.Status, b)
	}
	return b
}

// Endpoint is a SAML endpoint as SimpleSAMLphp's metadata parser reads it.
type Endpoint struct {
	Binding  string `json:"Binding"`
	Location string `json:"Location"`
	Index    int    `json:"index,omitempty"`
}

// Key is a certificate of an entity, as the parser reads it.
type Key struct {
	Encryption      bool   `json:"encryption"`
	Signing         bool   `json:"signing"`
	Type            string `json:"type"`
	X509Certificate string `json:"X509Certificate"`
}

// SPMetadata is an SP's metadata as SimpleSAMLphp's SAMLParser reads it
// (getMetadata20SP): what an IdP operator gets from importing the file.
type SPMetadata struct {
	EntityID                 string     `json:"entityid"`
	AssertionConsumerService []Endpoint `json:"AssertionConsumerService"`
	SingleLogoutService      []Endpoint `json:"SingleLogoutService"`
	NameIDFormat             string     `json:"NameIDFormat"`
	Keys                     []Key      `json:"keys"`
	// Expire is the metadata's validUntil, as SimpleSAMLphp enforces it:
	// past it, the IdP drops the SP. Zero when the metadata has none.
	Expire time.Time `json:"-"`
	// AuthnRequestsSigned and WantAssertionsSigned are the SP's own
	// attributes, nil when absent (validate.authnrequest and
	// saml20.sign.assertion of the parsed entry).
	AuthnRequestsSigned  *bool `json:"validate.authnrequest"`
	WantAssertionsSigned *bool `json:"saml20.sign.assertion"`
	// SchemaError is why the XML does not validate against SimpleSAMLphp's
	// copy of the SAML 2.0 metadata schema ("" when it does).
	SchemaError string `json:"-"`
	// Raw is the whole parsed entry, as saml20-sp-remote.php would hold it.
	Raw map[string]any `json:"-"`
}

//go:embed spmeta.php
var spmetaPHP []byte

// ParseSPMetadata reads metadata with SimpleSAMLphp's own metadata parser
// (SimpleSAML\Metadata\SAMLParser, run by php on the command line) and
// validates it against the SAML 2.0 metadata schema. It fails when the
// parser throws or finds no SAML 2.0 SP in it; a schema violation is
// reported in SchemaError, not as an error (SimpleSAMLphp itself imports
// such metadata).
func (idp *IdP) ParseSPMetadata(metadata []byte) (*SPMetadata, error) {
	dir, err := os.MkdirTemp(idp.Dir, "spmeta-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	in := filepath.Join(dir, "metadata.xml")
	if err := os.WriteFile(in, metadata, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(idp.cfg.PHP, "-d", "display_errors=stderr", "-d", "error_reporting="+phpErrorReporting, "-f", idp.spmetaScript(), "--", idp.cfg.Root, in)
	cmd.Env = idp.env()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("SAMLParser: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var out struct {
		Schema   any               `json:"schema"`
		Entities []json.RawMessage `json:"entities"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &out); err != nil {
		return nil, fmt.Errorf("SAMLParser output: %v: %s", err, stdout.String())
	}
	if len(out.Entities) != 1 {
		return nil, fmt.Errorf("SAMLParser found %d SAML 2.0 SPs in the metadata, want 1", len(out.Entities))
	}
	md := &SPMetadata{}
	if err := json.Unmarshal(out.Entities[0], md); err != nil {
		return nil, fmt.Errorf("SAMLParser entity: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out.Entities[0])))
	dec.UseNumber()
	if err := dec.Decode(&md.Raw); err != nil {
		return nil, fmt.Errorf("SAMLParser entity: %v", err)
	}
	if n, ok := md.Raw["expire"].(json.Number); ok {
		if secs, err := n.Int64(); err == nil {
			md.Expire = time.Unix(secs, 0)
		}
	}
	if s, ok := out.Schema.(string); ok {
		md.SchemaError = s
	}
	return md, nil
}

// spmetaScript is the parser script, written by writeStatic.
func (idp *IdP) spmetaScript() string {
	return filepath.Join(idp.Dir, "spmeta.php")
}

// writeSP writes the entry of one SP, under a name derived from its entity
// ID, and trusts its hosts as ReturnTo targets.
func (idp *IdP) writeSP(entityID string, entry map[string]any, hosts []string) error {
	b, err := json.MarshalIndent(entry, "", "  ")
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(entityID))
	idp.mu.Lock()
	defer idp.mu.Unlock()
	if err := writeFileAtomic(filepath.Join(idp.spRemoteDir(), hex.EncodeToString(sum[:8])+".json"), b); err != nil {
		return err
	}
	for _, h := range hosts {
		if !slices.Contains(idp.trusted, h) {
			idp.trusted = append(idp.trusted, h)
		}
	}
	return idp.writeConfigLocked()
}

// env is the environment of php: ours, with SIMPLESAMLPHP_CONFIG_DIR
// naming the IdP's configuration (os/exec keeps the last of duplicates).
func (idp *IdP) env() []string {
	return append(os.Environ(), "SIMPLESAMLPHP_CONFIG_DIR="+idp.configDir())
}

func (idp *IdP) configDir() string   { return filepath.Join(idp.Dir, "config") }
func (idp *IdP) metadataDir() string { return filepath.Join(idp.Dir, "metadata") }
func (idp *IdP) spRemoteDir() string { return filepath.Join(idp.metadataDir(), "sp-remote") }

// The PHP files SimpleSAMLphp includes: each decodes a JSON file written
// by the harness, so no PHP is generated from Go values.
const (
	configPHP      = "<?php\n$config = json_decode(file_get_contents(__DIR__ . '/config.json'), true, 512, JSON_THROW_ON_ERROR);\n"
	authsourcesPHP = "<?php\n$config = json_decode(file_get_contents(__DIR__ . '/authsources.json'), true, 512, JSON_THROW_ON_ERROR);\n"
	idpHostedPHP   = "<?php\n$metadata = json_decode(file_get_contents(__DIR__ . '/idp-hosted.json'), true, 512, JSON_THROW_ON_ERROR);\n"
	spRemotePHP    = "<?php\n$metadata = [];\nforeach (glob(__DIR__ . '/sp-remote/*.json') as $f) {\n" +
		"    $m = json_decode(file_get_contents($f), true, 512, JSON_THROW_ON_ERROR);\n    $metadata[$m['entityid']] = $m;\n}\n"
)

// writeStatic writes what does not depend on the port: key and
// certificate, the PHP files, the auth source, the hosted IdP's metadata
// and the parser script.
func (idp *IdP) writeStatic(tb testing.TB) error {
	for _, d := range []string{"config", "metadata/sp-remote", "cert", "log", "data", "tmp", "sessions"} {
		if err := os.MkdirAll(filepath.Join(idp.Dir, d), 0o700); err != nil {
			return err
		}
	}
	key, cert := devidptest.KeyPair(tb) // one RSA key per test process: generating one is slow
	if err := keypair.Write(filepath.Join(idp.Dir, "cert", "idp.key"), filepath.Join(idp.Dir, "cert", "idp.crt"), key, cert); err != nil {
		return err
	}
	users := map[string]any{}
	for _, u := range idp.cfg.Users {
		users[u.Name+":"+u.Password] = map[string][]string{
			"uid": {u.Name}, "mail": {u.Mail}, "eduPersonAffiliation": u.Affiliations,
		}
	}
	source := map[string]any{"0": "exampleauth:UserPass"}
	for k, v := range users {
		source[k] = v
	}
	hosted := map[string]any{
		"host":        "__DEFAULT__",
		"privatekey":  "idp.key",
		"certificate": "idp.crt",
		"auth":        AuthSource,
		// One generator per format: the IdP answers with the format an
		// AuthnRequest asks for when it can make it, else with the SP
		// entry's NameIDFormat.
		"authproc": map[string]any{
			"10": map[string]any{"class": "saml:TransientNameID"},
			"11": map[string]any{"class": "saml:PersistentNameID", "attribute": "uid"},
			"12": map[string]any{"class": "saml:AttributeNameID", "attribute": "mail", "Format": NameIDEmail},
			"13": map[string]any{"class": "saml:AttributeNameID", "attribute": "uid", "Format": NameIDUnspecified},
		},
	}
	if idp.cfg.WantAuthnRequestsSigned {
		hosted["validate.authnrequest"] = true
	}
	files := []struct {
		path string
		data []byte
	}{
		{"config/config.php", []byte(configPHP)},
		{"config/authsources.php", []byte(authsourcesPHP)},
		{"metadata/saml20-idp-hosted.php", []byte(idpHostedPHP)},
		{"metadata/saml20-sp-remote.php", []byte(spRemotePHP)},
		{"spmeta.php", spmetaPHP},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(idp.Dir, f.path), f.data, 0o600); err != nil {
			return err
		}
	}
	for path, v := range map[string]any{
		"config/authsources.json":  map[string]any{"admin": []string{"core:AdminPassword"}, AuthSource: source},
		"metadata/idp-hosted.json": map[string]any{"__DYNAMIC:1__": hosted},
	} {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(idp.Dir, path), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// writeConfig writes config.json for the current port and trusted hosts.
func (idp *IdP) writeConfig() error {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	return idp.writeConfigLocked()
}

func (idp *IdP) writeConfigLocked() error {
	dir := idp.Dir + string(filepath.Separator)
	cfg := map[string]any{
		"baseurlpath":            idp.URL + "/",
		"certdir":                dir + "cert/",
		"loggingdir":             dir + "log/",
		"datadir":                dir + "data/",
		"tempdir":                dir + "tmp/",
		"metadatadir":            dir + "metadata/",
		"metadata.sources":       []any{map[string]any{"type": "flatfile", "directory": dir + "metadata"}},
		"secretsalt":             idp.salt,
		"auth.adminpassword":     idp.adminPW,
		"admin.checkforupdates":  false,
		"technicalcontact_name":  "samlha tests",
		"technicalcontact_email": "samlha-tests@example.com",
		"timezone":               "UTC",
		"enable.saml20-idp":      true,
		"module.enable":          map[string]bool{"exampleauth": true, "core": true, "saml": true},
		// PHP's own session files, in the test's directory.
		"store.type":                    "phpsession",
		"session.phpsession.savepath":   dir + "sessions",
		"session.phpsession.cookiename": "SimpleSAML",
		// Loopback is plain http: cookies cannot be Secure, hence not
		// SameSite=None either.
		"session.cookie.secure":    false,
		"session.cookie.samesite":  nil,
		"language.cookie.secure":   false,
		"language.cookie.samesite": nil,
		"logging.handler":          "stderr",
		"logging.level":            7, // SimpleSAML\Logger::DEBUG
		"showerrors":               true,
		"errorreporting":           false,
		"trusted.url.domains":      append([]string{}, idp.trusted...),
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(idp.configDir(), "config.json"), b)
}

// writeFileAtomic replaces path with data, so the server, which reads the
// file on every request, never sees half of it.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func randomHex(tb testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}
