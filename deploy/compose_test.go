package deploy

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

const (
	composeFile  = "docker-compose.yml" // at repoRoot
	deployReadme = "README.md"          // this directory's
)

// composeRun is what one compose service runs, when it runs one of our
// binaries: the program, its --help, and the flag values it gets from its
// command line and its environment.
type composeRun struct {
	Service string
	Binary  string // "samlsp"
	Sub     string // "keygen", or ""
	Help    *helpSpec
	Values  map[string][]string // flag name -> values (command line over environment)
}

// value returns the last value given for flag, and whether any was.
func (r *composeRun) value(flag string) (string, bool) {
	v := r.Values[flag]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// loadCompose loads docker-compose.yml as `docker compose` would with env as
// its whole environment (the test's own is not used) and profiles enabled
// (none: COMPOSE_PROFILES from env, as compose does).
func loadCompose(t *testing.T, env map[string]string, profiles ...string) *types.Project {
	t.Helper()
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	abs, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(abs, composeFile)},
		cli.WithWorkingDirectory(abs),
		cli.WithEnv(list),
		cli.WithDefaultProfiles(profiles...),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load %s with env %v, profiles %v: %v", composeFile, env, profiles, err)
	}
	return p
}

// builtFromDockerfile reports whether s is built from deploy/Dockerfile.
func builtFromDockerfile(s types.ServiceConfig) bool {
	return s.Build != nil && filepath.ToSlash(filepath.Clean(s.Build.Dockerfile)) == "deploy/Dockerfile"
}

var shells = []string{"sh", "/bin/sh", "/busybox/sh", "bash", "/bin/bash"}

// scriptCommand finds "/usr/local/bin/PROG args..." in a shell script and
// returns PROG and its arguments up to the end of that simple command.
func scriptCommand(script string) (string, []string, error) {
	m := regexp.MustCompile(`/usr/local/bin/([A-Za-z0-9._-]+)([^;&|]*)`).FindStringSubmatch(script)
	if m == nil {
		return "", nil, fmt.Errorf("shell script runs none of the image's programs: %q", script)
	}
	return m[1], shellFields(m[2]), nil
}

// resolveRun works out what service s runs and checks every flag and
// environment variable against that program's --help.
func resolveRun(t *testing.T, d *dockerfile, s types.ServiceConfig) (*composeRun, []string) {
	t.Helper()
	if !builtFromDockerfile(s) {
		return nil, nil
	}
	var problems []string
	stage := d.Stages[len(d.Stages)-1]
	if s.Build.Target != "" {
		if stage = d.stage(s.Build.Target); stage == nil {
			return nil, []string{fmt.Sprintf("%s: build target %q is not a stage of the Dockerfile", s.Name, s.Build.Target)}
		}
	}
	entry := []string(s.Entrypoint)
	if len(entry) == 0 {
		entry = stage.Entrypoint
	}
	if len(entry) == 0 {
		return nil, []string{fmt.Sprintf("%s: no entrypoint (neither the service nor stage %s names a program)", s.Name, stage.Name)}
	}
	var bin string
	var args []string
	if slices.Contains(shells, entry[0]) {
		if len(entry) < 3 || entry[1] != "-c" {
			return nil, []string{fmt.Sprintf("%s: shell entrypoint %q without -c SCRIPT", s.Name, entry)}
		}
		var err error
		if bin, args, err = scriptCommand(entry[2]); err != nil {
			return nil, []string{fmt.Sprintf("%s: %v", s.Name, err)}
		}
		if stage.Installed["/usr/local/bin/"+bin] == "" {
			problems = append(problems, fmt.Sprintf("%s: its script runs /usr/local/bin/%s, which stage %s does not install", s.Name, bin, stage.Name))
		}
	} else {
		bin = stage.Installed[entry[0]]
		if bin == "" {
			return nil, []string{fmt.Sprintf("%s: entrypoint %s is not a program that stage %s installs (%v)", s.Name, entry[0], stage.Name, stage.Installed)}
		}
		args = append(slices.Clone(entry[1:]), s.Command...)
	}
	pkg, ok := d.pkgOf(bin)
	if !ok {
		return nil, []string{fmt.Sprintf("%s: runs %s, which the Dockerfile does not build", s.Name, bin)}
	}
	r := &composeRun{Service: s.Name, Binary: bin, Values: map[string][]string{}}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		r.Sub, args = args[0], args[1:]
	}
	r.Help = bins.helpFor(t, bin, pkg, r.Sub)
	fromCmd, errs := parseArgs(r.Help, args)
	for _, e := range errs {
		problems = append(problems, s.Name+": "+e)
	}
	for k, v := range s.Environment {
		f, ok := r.Help.ByEnv[k]
		if !ok {
			if strings.HasPrefix(k, "SAMLHA") || strings.HasPrefix(k, r.Help.EnvPrefix+"_") {
				problems = append(problems, fmt.Sprintf("%s: environment %s is not a twin of any flag of %s (its twins are %s_<FLAG>)", s.Name, k, r.Help.Program, r.Help.EnvPrefix))
			}
			continue
		}
		if v == nil {
			problems = append(problems, fmt.Sprintf("%s: environment %s has no value (it would come from the host's environment)", s.Name, k))
			continue
		}
		r.Values[f.Name] = []string{*v}
	}
	for k, v := range fromCmd {
		r.Values[k] = v // the command line wins, as in cli.Parse
	}
	return r, problems
}

// parseArgs reads a command line as Go's flag package would and reports each
// flag that the program does not have, and any positional argument.
func parseArgs(h *helpSpec, args []string) (map[string][]string, []string) {
	vals := map[string][]string{}
	var problems []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			problems = append(problems, fmt.Sprintf("%s takes no positional arguments, got %q", h.Program, args[i+1:]))
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			problems = append(problems, fmt.Sprintf("%s: unexpected argument %q (flags only)", h.Program, a))
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f, ok := h.Flags[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("--%s is not a flag of %s (it has %s)", name, h.Program, h.flagNames()))
			continue
		}
		switch {
		case hasVal:
		case f.Bool:
			val = "true"
		case i+1 < len(args):
			i++
			val = args[i]
		default:
			problems = append(problems, fmt.Sprintf("--%s needs a value", name))
			continue
		}
		vals[name] = append(vals[name], val)
	}
	return vals, problems
}

// stack is a loaded compose project with what each service runs.
type stack struct {
	Project *types.Project
	Runs    map[string]*composeRun // service name -> run, for our binaries
}

func (st *stack) byBinary(bin, sub string) []*composeRun {
	var out []*composeRun
	for _, r := range st.Runs {
		if r.Binary == bin && r.Sub == sub {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

func loadStack(t *testing.T, d *dockerfile, env map[string]string, profiles ...string) *stack {
	t.Helper()
	p := loadCompose(t, env, profiles...)
	st := &stack{Project: p, Runs: map[string]*composeRun{}}
	for _, name := range p.ServiceNames() {
		r, problems := resolveRun(t, d, p.Services[name])
		for _, pr := range problems {
			t.Error(pr)
		}
		if r != nil {
			st.Runs[name] = r
		}
	}
	return st
}

// hostPort splits a listen address or URL host and returns the port as a
// string ("" when absent).
func hostPort(hp string) (string, string) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return hp, ""
	}
	return h, p
}

// urlPort returns u's port, or the scheme's default.
func urlPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// published returns the host side of the mapping of container port target.
func published(s types.ServiceConfig, target string) (types.ServicePortConfig, bool) {
	for _, p := range s.Ports {
		if fmt.Sprint(p.Target) == target {
			return p, true
		}
	}
	return types.ServicePortConfig{}, false
}

// serviceNamed returns the service that host names inside the compose
// network (its service name or its hostname).
func serviceNamed(p *types.Project, host string) (types.ServiceConfig, bool) {
	for _, s := range p.Services {
		if s.Name == host || s.Hostname == host {
			return s, true
		}
	}
	return types.ServiceConfig{}, false
}

// mountOf returns the volume mount of s that holds path p, and p relative to
// it.
func mountOf(s types.ServiceConfig, p string) (types.ServiceVolumeConfig, string, bool) {
	for _, v := range s.Volumes {
		if rel, err := filepath.Rel(v.Target, p); err == nil && !strings.HasPrefix(rel, "..") {
			return v, filepath.ToSlash(rel), true
		}
	}
	return types.ServiceVolumeConfig{}, "", false
}

// checkStack checks that the services line up: names, ports, URLs, keys,
// health checks and the order they start in. It returns the SP replicas'
// shared settings and the proxy's, for the scenario checks.
func checkStack(t *testing.T, st *stack) (sp, proxy *composeRun) {
	t.Helper()
	p := st.Project
	sps := st.byBinary("samlsp", "")
	keys := st.byBinary("samlsp", "keygen")
	proxies := st.byBinary("stickyproxy", "")
	idps := st.byBinary("devidp", "")
	if len(sps) < 2 || len(keys) != 1 || len(proxies) != 1 || len(idps) != 1 {
		t.Fatalf("want ≥2 samlsp replicas, 1 keygen, 1 stickyproxy, 1 devidp; got %d, %d, %d, %d", len(sps), len(keys), len(proxies), len(idps))
	}
	proxy, idp, key := proxies[0], idps[0], keys[0]

	// Every port is published on loopback only.
	for _, s := range p.Services {
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s:%s->%d: publish on 127.0.0.1 only", s.Name, port.HostIP, port.Published, port.Target)
			}
		}
	}

	// The public side: the proxy's published port is the SPs' root URL.
	proxyListen, ok := proxy.value("listen")
	if !ok {
		t.Fatalf("%s: --listen not set (the default listens on 127.0.0.1 inside the container, which nothing can reach)", proxy.Service)
	}
	proxyHost, proxyPort := hostPort(proxyListen)
	if proxyHost != "0.0.0.0" && proxyHost != "" && proxyHost != "::" {
		t.Errorf("%s: --listen %s: listen on all interfaces of the container", proxy.Service, proxyListen)
	}
	pub, ok := published(p.Services[proxy.Service], proxyPort)
	if !ok {
		t.Fatalf("%s listens on %s but does not publish it", proxy.Service, proxyPort)
	}

	// The SP replicas agree with each other and with the proxy's targets.
	instances := map[string]*composeRun{}
	shared := func(r *composeRun) string {
		var parts []string
		for k, v := range r.Values {
			if k != "instance-id" {
				parts = append(parts, k+"="+strings.Join(v, ","))
			}
		}
		sort.Strings(parts)
		return strings.Join(parts, " ")
	}
	for _, r := range sps {
		svc := p.Services[r.Service]
		id, ok := r.value("instance-id")
		if !ok {
			t.Errorf("%s: set --instance-id (or SAMLHA_INSTANCE_ID): the stickyproxy target names must equal it", r.Service)
			continue
		}
		if prev, dup := instances[id]; dup {
			t.Errorf("%s and %s both have --instance-id %s", prev.Service, r.Service, id)
		}
		instances[id] = r
		if shared(r) != shared(sps[0]) {
			t.Errorf("replicas differ beyond --instance-id:\n %s: %s\n %s: %s", sps[0].Service, shared(sps[0]), r.Service, shared(r))
		}
		if len(svc.Ports) > 0 {
			t.Errorf("%s publishes ports: replicas are reached through the proxy only (the root URL is the proxy's)", r.Service)
		}
		listen, _ := r.value("listen")
		if h, _ := hostPort(listen); h != "0.0.0.0" && h != "" && h != "::" {
			t.Errorf("%s: --listen %q: listen on all interfaces of the container", r.Service, listen)
		}
		if ml, ok := r.value("metrics-listen"); !ok || ml == "" {
			t.Errorf("%s: set --metrics-listen (SAMLHA_METRICS_LISTEN): metrics are not served on the public port", r.Service)
		} else if _, mp := hostPort(ml); func() bool { _, lp := hostPort(listen); return mp == lp }() {
			t.Errorf("%s: --metrics-listen %s shares the public port of --listen %s", r.Service, ml, listen)
		}
		if tp, ok := r.value("trusted-proxies"); !ok || tp == "" {
			t.Errorf("%s: set --trusted-proxies (SAMLHA_TRUSTED_PROXIES): behind the proxy, without it every user shares the proxy's login-rate limit", r.Service)
		}
		root, _ := r.value("root-url")
		u, err := url.Parse(root)
		switch {
		case err != nil || u.Host == "":
			t.Errorf("%s: --root-url %q is not an absolute URL", r.Service, root)
		case u.Hostname() != "localhost" && u.Hostname() != "127.0.0.1":
			t.Errorf("%s: --root-url %s: the browser reaches the proxy on this machine (localhost)", r.Service, root)
		case urlPort(u) != pub.Published:
			t.Errorf("%s: --root-url %s, but the proxy is published on port %s", r.Service, root, pub.Published)
		}
		md, _ := r.value("idp-metadata-url")
		mu, err := url.Parse(md)
		if err != nil || mu.Path != "/metadata" {
			t.Errorf("%s: --idp-metadata-url %q: want http://<idp service>:<port>/metadata", r.Service, md)
		} else if s, ok := serviceNamed(p, mu.Hostname()); !ok || st.Runs[s.Name] != idp {
			t.Errorf("%s: --idp-metadata-url %s does not name the IdP service %s", r.Service, md, idp.Service)
		} else if l, _ := idp.value("listen"); urlPort(mu) != func() string { _, p := hostPort(l); return p }() {
			t.Errorf("%s: --idp-metadata-url %s, but %s listens on %s", r.Service, md, idp.Service, l)
		}
		checkKeys(t, p, r, key)
		if dep, ok := svc.DependsOn[key.Service]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s must wait for %s to complete successfully (depends_on condition service_completed_successfully)", r.Service, key.Service)
		}
		checkHealth(t, svc, r, "/readyz")
		checkStore(t, p, r)
	}

	// Proxy targets: name = instance ID, URL = that replica's service and port.
	targets := map[string]bool{}
	for _, tv := range proxy.Values["target"] {
		for _, one := range strings.Split(tv, ",") {
			name, raw, ok := strings.Cut(one, "=")
			raw, _, _ = strings.Cut(raw, ";") // ;weight=N
			u, err := url.Parse(raw)
			if !ok || err != nil || u.Host == "" {
				t.Errorf("%s: --target %q: want name=http://host:port", proxy.Service, one)
				continue
			}
			targets[name] = true
			r, ok := instances[name]
			if !ok {
				t.Errorf("%s: target %s names no replica (instance IDs: %v)", proxy.Service, name, slices.Sorted(mapsKeys(instances)))
				continue
			}
			if s, ok := serviceNamed(p, u.Hostname()); !ok || s.Name != r.Service {
				t.Errorf("%s: target %s points at host %s, but instance %s is service %s", proxy.Service, name, u.Hostname(), name, r.Service)
			}
			listen, _ := r.value("listen")
			if _, lp := hostPort(listen); urlPort(u) != lp {
				t.Errorf("%s: target %s uses port %s, but %s listens on %s", proxy.Service, name, urlPort(u), r.Service, listen)
			}
			if dep, ok := p.Services[proxy.Service].DependsOn[r.Service]; !ok || dep.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s must wait for %s to be healthy", proxy.Service, r.Service)
			}
		}
	}
	for id := range instances {
		if !targets[id] {
			t.Errorf("replica %s (%s) is not a target of %s", id, instances[id].Service, proxy.Service)
		}
	}
	// Readiness, not liveness: targets are checked on /readyz, and the
	// proxy is healthy when some target is usable.
	if hp, ok := proxy.value("health-path"); !ok || hp != "/readyz" {
		t.Errorf("%s: --health-path %q, want /readyz", proxy.Service, hp)
	}
	checkHealth(t, p.Services[proxy.Service], proxy, "/readyz")

	// The IdP: reachable by the browser at its public URL, fetches the SPs'
	// metadata through the proxy.
	idpListen, _ := idp.value("listen")
	_, idpPort := hostPort(idpListen)
	idpPub, ok := published(p.Services[idp.Service], idpPort)
	if !ok {
		t.Errorf("%s listens on %q but does not publish it: browsers must reach its login form", idp.Service, idpListen)
	}
	pubURL, _ := idp.value("public-url")
	if u, err := url.Parse(pubURL); err != nil || u.Host == "" {
		t.Errorf("%s: --public-url %q is not an absolute URL", idp.Service, pubURL)
	} else {
		if urlPort(u) != idpPub.Published {
			t.Errorf("%s: --public-url %s, but it is published on port %s", idp.Service, pubURL, idpPub.Published)
		}
		root, _ := sps[0].value("root-url")
		if ru, err := url.Parse(root); err == nil && ru.Hostname() != u.Hostname() {
			// On plain http the SP's binding cookie is SameSite=Lax, which a
			// browser withholds from a cross-site POST: every login would
			// fail with binding-cookie-missing. Same host, other port, is
			// the same site.
			t.Errorf("IdP public URL %s and SP root URL %s are on different hosts: over http that makes the ACS POST cross-site", pubURL, root)
		}
	}
	mds := idp.Values["sp-metadata"]
	if len(mds) == 0 {
		t.Errorf("%s: no --sp-metadata", idp.Service)
	}
	for _, md := range mds {
		u, err := url.Parse(md)
		if err != nil || u.Path != "/saml/metadata" {
			t.Errorf("%s: --sp-metadata %q: want http://<proxy>:<port>/saml/metadata", idp.Service, md)
			continue
		}
		if s, ok := serviceNamed(p, u.Hostname()); !ok || s.Name != proxy.Service || urlPort(u) != proxyPort {
			t.Errorf("%s: --sp-metadata %s: want the proxy, %s:%s", idp.Service, md, proxy.Service, proxyPort)
		}
	}
	if dd, ok := idp.value("data-dir"); !ok {
		t.Errorf("%s: set --data-dir on a volume, so its signing key survives a restart", idp.Service)
	} else if _, _, ok := mountOf(p.Services[idp.Service], dd); !ok {
		t.Errorf("%s: --data-dir %s is not on a volume: a new container would make a new IdP key, which the SPs do not trust", idp.Service, dd)
	}
	checkHealth(t, p.Services[idp.Service], idp, "/healthz")
	return sps[0], proxy
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// checkKeys: the replica reads sp.key and sp.crt from the volume that the
// keys service writes them to.
func checkKeys(t *testing.T, p *types.Project, sp, key *composeRun) {
	t.Helper()
	dir, ok := key.value("dir")
	if !ok {
		t.Errorf("%s: samlsp keygen without --dir", key.Service)
		return
	}
	kv, krel, ok := mountOf(p.Services[key.Service], dir)
	if !ok || kv.ReadOnly {
		t.Errorf("%s: keygen --dir %s is not on a writable volume", key.Service, dir)
		return
	}
	for flag, file := range map[string]string{"sp-key": "sp.key", "sp-cert": "sp.crt"} {
		f, ok := sp.value(flag)
		if !ok {
			t.Errorf("%s: --%s not set", sp.Service, flag)
			continue
		}
		v, rel, ok := mountOf(p.Services[sp.Service], f)
		if !ok || v.Source != kv.Source || rel != path.Join(krel, file) {
			t.Errorf("%s: --%s %s is not %s in volume %s, where %s writes it", sp.Service, flag, f, file, kv.Source, key.Service)
		}
		if ok && !v.ReadOnly {
			t.Errorf("%s: mount the key volume read-only", sp.Service)
		}
	}
}

// checkHealth: the service has a health check that runs the image's
// healthcheck program against one of its own listeners, on path want.
func checkHealth(t *testing.T, s types.ServiceConfig, r *composeRun, want string) {
	t.Helper()
	if s.HealthCheck == nil || len(s.HealthCheck.Test) < 3 {
		t.Errorf("%s: no healthcheck", s.Name)
		return
	}
	test := s.HealthCheck.Test
	if test[0] != "CMD" || path.Base(test[1]) != "healthcheck" {
		t.Errorf("%s: healthcheck %q: want [CMD, /usr/local/bin/healthcheck, URL] (the image has no shell or curl)", s.Name, test)
		return
	}
	u, err := url.Parse(test[len(test)-1])
	if err != nil || u.Path != want {
		t.Errorf("%s: healthcheck %q: want a check of %s", s.Name, test, want)
		return
	}
	var ports []string
	for _, f := range []string{"listen", "admin-listen"} {
		if v, ok := r.value(f); ok {
			_, p := hostPort(v)
			ports = append(ports, p)
		}
	}
	if !slices.Contains(ports, u.Port()) {
		t.Errorf("%s: healthcheck %s: port %s is none of its listeners %v", s.Name, u, u.Port(), ports)
	}
}

// checkStore: a redis store URL names the Redis service, which the replica
// waits for.
func checkStore(t *testing.T, p *types.Project, r *composeRun) {
	t.Helper()
	mode, _ := r.value("store")
	if mode != "redis" {
		return
	}
	raw, _ := r.value("store-url")
	u, err := url.Parse(raw)
	if err != nil || !strings.HasPrefix(u.Scheme, "redis") {
		t.Errorf("%s: --store redis with --store-url %q: want redis://<redis service>:6379/0", r.Service, raw)
		return
	}
	s, ok := serviceNamed(p, u.Hostname())
	if !ok || !strings.HasPrefix(s.Image, "redis") {
		t.Errorf("%s: --store-url %s names no enabled Redis service (is its profile on?)", r.Service, raw)
		return
	}
	if urlPort(u) != "6379" && u.Port() != "" {
		t.Errorf("%s: --store-url %s: Redis listens on 6379", r.Service, raw)
	}
	if dep, ok := p.Services[r.Service].DependsOn[s.Name]; !ok || dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("%s must wait for %s to be healthy", r.Service, s.Name)
	}
}

// composeCommand is one documented `docker compose ... up` line.
type composeCommand struct {
	Scenario string
	Line     string
	Env      map[string]string
	Profiles []string
}

var (
	scenarioCommentRE = regexp.MustCompile(`^#\s*([a-z0-9-]+):`)
	assignRE          = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)
	profileRE         = regexp.MustCompile(`(?:--profile[ =]|COMPOSE_PROFILES=)([A-Za-z0-9_.,-]+)`)
)

// readmeCommands returns the `docker compose ... up` lines of the fenced code
// blocks of deploy/README.md, each with the scenario named by the comment
// line above it ("# roundrobin-redis: ...").
func readmeCommands(t *testing.T) []composeCommand {
	t.Helper()
	b, err := os.ReadFile(deployReadme)
	if err != nil {
		t.Fatal(err)
	}
	var out []composeCommand
	inCode, scenario := false, ""
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			inCode, scenario = !inCode, ""
			continue
		}
		if !inCode {
			continue
		}
		if m := scenarioCommentRE.FindStringSubmatch(trimmed); m != nil {
			scenario = m[1]
			continue
		}
		f := shellFields(trimmed)
		env := map[string]string{}
		for len(f) > 0 && assignRE.MatchString(f[0]) {
			k, v, _ := strings.Cut(f[0], "=")
			env[k] = v
			f = f[1:]
		}
		if len(f) < 2 || f[0] != "docker" || f[1] != "compose" || !slices.Contains(f, "up") {
			continue
		}
		c := composeCommand{Scenario: scenario, Line: trimmed, Env: env}
		for i := 2; i < len(f); i++ {
			switch {
			case f[i] == "--profile" && i+1 < len(f):
				c.Profiles = append(c.Profiles, f[i+1])
				i++
			case strings.HasPrefix(f[i], "--profile="):
				c.Profiles = append(c.Profiles, strings.TrimPrefix(f[i], "--profile="))
			case f[i] == "-f" || f[i] == "--file" || f[i] == "--env-file" || strings.HasPrefix(f[i], "--env-file="):
				t.Errorf("README command %q: the test loads only %s with the variables on the line; add support here before documenting %s", trimmed, composeFile, f[i])
			}
		}
		out = append(out, c)
		scenario = ""
	}
	return out
}

// scenarioWant is what a documented strategy must configure.
type scenarioWant struct {
	store, stickiness string
	twin              bool
	redis             bool
}

// The four strategies the README must document, by the lab's scenario names.
var composeScenarios = map[string]scenarioWant{
	"roundrobin-memory":    {store: "memory", stickiness: "off"},
	"sticky-memory":        {store: "memory", stickiness: "duration", twin: true},
	"roundrobin-redis":     {store: "redis", stickiness: "off", redis: true},
	"roundrobin-stateless": {store: "stateless", stickiness: "off"},
}

func TestComposeDocumentedStrategies(t *testing.T) {
	t.Parallel()
	d := loadDockerfile(t)
	cmds := readmeCommands(t)
	seen := map[string]bool{}
	for _, c := range cmds {
		if c.Scenario == "" {
			continue
		}
		want, known := composeScenarios[c.Scenario]
		t.Run(c.Scenario, func(t *testing.T) {
			if !known {
				t.Fatalf("README names scenario %q above %q; the test knows %v", c.Scenario, c.Line, slices.Sorted(mapsKeys(composeScenarios)))
			}
			seen[c.Scenario] = true
			st := loadStack(t, d, c.Env, c.Profiles...)
			sp, proxy := checkStack(t, st)
			store, _ := sp.value("store")
			stick, _ := proxy.value("stickiness")
			twin, _ := proxy.value("cookie-twin")
			_, redisOn := st.Project.Services["redis"]
			got := scenarioWant{store: store, stickiness: stick, twin: twin == "true", redis: redisOn}
			if got != want {
				t.Errorf("%q\n gives store=%s stickiness=%s twin=%v redis-running=%v\n want store=%s stickiness=%s twin=%v redis-running=%v",
					c.Line, got.store, got.stickiness, got.twin, got.redis, want.store, want.stickiness, want.twin, want.redis)
			}
		})
	}
	for name := range composeScenarios {
		if !seen[name] {
			t.Errorf("%s documents no command for %s (a line `# %s: ...` above a `docker compose ... up` line in a code block)", deployReadme, name, name)
		}
	}
}

func TestComposeDefaultsAreTheFieldFailure(t *testing.T) {
	t.Parallel()
	st := loadStack(t, loadDockerfile(t), nil)
	sp, proxy := checkStack(t, st)
	store, _ := sp.value("store")
	stick, _ := proxy.value("stickiness")
	if store != "memory" || stick != "off" {
		t.Errorf("plain `docker compose up` gives store=%s stickiness=%s; README promises the field failure, memory and off", store, stick)
	}
	if _, ok := st.Project.Services["redis"]; ok {
		t.Error("redis runs without its profile")
	}
}

func TestComposeProfiles(t *testing.T) {
	t.Parallel()
	all := loadCompose(t, nil, "*")
	defined := map[string]bool{}
	for _, s := range all.Services {
		for _, p := range s.Profiles {
			defined[p] = true
		}
	}
	documented := map[string]string{}
	for _, f := range []string{deployReadme, filepath.Join(repoRoot, composeFile), filepath.Join(repoRoot, "README.md")} {
		b, err := os.ReadFile(f)
		if err != nil {
			if os.IsNotExist(err) && f != deployReadme {
				continue
			}
			t.Fatal(err)
		}
		for _, m := range profileRE.FindAllStringSubmatch(string(b), -1) {
			for _, p := range strings.Split(m[1], ",") {
				documented[p] = f
			}
		}
	}
	for p, f := range documented {
		if !defined[p] {
			t.Errorf("%s documents profile %q, which no service of %s has (profiles: %v)", f, p, composeFile, slices.Sorted(mapsKeys(defined)))
		}
	}
	for p := range defined {
		if _, ok := documented[p]; !ok {
			t.Errorf("profile %q of %s is not documented in %s", p, composeFile, deployReadme)
		}
		// Every profile loads on its own and with the default variables.
		t.Run(p, func(t *testing.T) {
			prj := loadCompose(t, nil, p)
			for name, s := range prj.Services {
				for dep, cfg := range s.DependsOn {
					if _, ok := prj.Services[dep]; !ok && cfg.Required {
						t.Errorf("with profile %s: %s requires %s, which is not enabled", p, name, dep)
					}
				}
			}
		})
	}
}

// TestComposeSAMLLabCommand checks the samllab command lines README gives
// (pointing the lab at the stack) against samllab's --help.
func TestComposeSAMLLabCommand(t *testing.T) {
	t.Parallel()
	d := loadDockerfile(t)
	pkg, ok := d.pkgOf("samllab")
	if !ok {
		t.Fatal("the Dockerfile does not build samllab")
	}
	if ok, err := isMainPackage(filepath.Join(repoRoot, filepath.FromSlash(pkg))); err != nil {
		t.Fatal(err)
	} else if !ok {
		skipOrFail(t, "%s is not a main package yet: cannot check README's samllab lines", pkg)
	}
	b, err := os.ReadFile(deployReadme)
	if err != nil {
		t.Fatal(err)
	}
	st := loadStack(t, d, nil)
	_, proxy := checkStack(t, st)
	l, _ := proxy.value("listen")
	_, lp := hostPort(l)
	pub, _ := published(st.Project.Services[proxy.Service], lp)
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := shellFields(strings.TrimSpace(line))
		i := slices.Index(f, "./cmd/samllab")
		if i < 0 || len(f) < i+2 || f[i+1] != "run" {
			continue
		}
		n++
		args := f[i+2:]
		if j := slices.Index(args, "#"); j >= 0 {
			args = args[:j]
		}
		h := bins.helpFor(t, "samllab", pkg, "run")
		vals, problems := parseArgs(h, args)
		for _, pr := range problems {
			t.Errorf("README: %q: %s", strings.TrimSpace(line), pr)
		}
		if tv := vals["target"]; len(tv) > 0 {
			u, err := url.Parse(tv[0])
			if err != nil || urlPort(u) != pub.Published || u.Hostname() != "localhost" {
				t.Errorf("README: %q: --target should be http://localhost:%s, the proxy", strings.TrimSpace(line), pub.Published)
			}
		}
	}
	if n == 0 {
		t.Errorf("%s shows no `go run ./cmd/samllab run --target ...` line", deployReadme)
	}
}

func TestParseArgs(t *testing.T) {
	t.Parallel()
	h := &helpSpec{Program: "p", Flags: map[string]flagSpec{
		"listen": {Name: "listen"}, "twin": {Name: "twin", Bool: true}, "target": {Name: "target"},
	}}
	vals, problems := parseArgs(h, []string{"--listen", ":1", "--twin", "-target=a=b", "--target=c=d", "--twin=false", "--nope", "stray"})
	want := map[string][]string{"listen": {":1"}, "twin": {"true", "false"}, "target": {"a=b", "c=d"}}
	if fmt.Sprint(vals) != fmt.Sprint(want) {
		t.Errorf("values = %v, want %v", vals, want)
	}
	if len(problems) != 2 || !strings.Contains(problems[0], "--nope") || !strings.Contains(problems[1], "stray") {
		t.Errorf("problems = %q, want --nope and stray", problems)
	}
}

// TestComposeProxyAdminGuarded: the proxy's admin API is published on the
// host's loopback only and reads its token from the volume that the
// one-shot `stickyproxy admin-token` service writes it to, before the proxy
// starts.
func TestComposeProxyAdminGuarded(t *testing.T) {
	t.Parallel()
	st := loadStack(t, loadDockerfile(t), nil)
	_, proxy := checkStack(t, st)
	p := st.Project
	adm, ok := proxy.value("admin-listen")
	if !ok || adm == "" {
		t.Fatal("the proxy has no --admin-listen")
	}
	_, port := hostPort(adm)
	if pub, ok := published(p.Services[proxy.Service], port); ok && pub.HostIP != "127.0.0.1" {
		t.Errorf("%s: admin port %s published on %q, want 127.0.0.1", proxy.Service, port, pub.HostIP)
	}
	if v, ok := proxy.value("admin-insecure"); ok && v == "true" {
		t.Errorf("%s: --admin-insecure", proxy.Service)
	}
	file, ok := proxy.value("admin-token-file")
	if !ok {
		t.Fatalf("%s: no --admin-token-file", proxy.Service)
	}
	makers := st.byBinary("stickyproxy", "admin-token")
	if len(makers) != 1 {
		t.Fatalf("want one service running `stickyproxy admin-token`, got %d", len(makers))
	}
	mk := makers[0]
	out, _ := mk.value("file")
	mv, mrel, ok := mountOf(p.Services[mk.Service], out)
	if !ok || mv.ReadOnly {
		t.Fatalf("%s: --file %s is not on a writable volume", mk.Service, out)
	}
	pv, prel, ok := mountOf(p.Services[proxy.Service], file)
	if !ok || pv.Source != mv.Source || prel != mrel {
		t.Errorf("%s: --admin-token-file %s is not %s in volume %s, where %s writes it", proxy.Service, file, mrel, mv.Source, mk.Service)
	}
	if ok && !pv.ReadOnly {
		t.Errorf("%s: mount the token volume read-only", proxy.Service)
	}
	if dep, ok := p.Services[proxy.Service].DependsOn[mk.Service]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("%s must wait for %s to complete successfully", proxy.Service, mk.Service)
	}
}
