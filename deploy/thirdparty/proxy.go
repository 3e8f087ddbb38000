package thirdparty

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/samlha/samlha/store/localproc"
)

// Kind is a proxy program.
type Kind string

// The proxies the reference configurations are written for.
const (
	Nginx   Kind = "nginx"
	Caddy   Kind = "caddy"
	HAProxy Kind = "haproxy"
)

// ProxyConfig is one proxy's configuration, to check or to run.
type ProxyConfig struct {
	Kind Kind
	// Dir holds the configuration file, the log, nginx's prefix and pid
	// file, and Caddy's HOME.
	Dir string
	// Text is the configuration (for Caddy, a Caddyfile).
	Text string
	// Name is the file name in Dir (default: by kind).
	Name string
	// Env is added to the program's environment (which is otherwise only
	// PATH and HOME): a Caddyfile's {$VAR}, say.
	Env []string
	// Files are written into Dir beside the configuration, by name: files
	// it loads (HAProxy's lua-load).
	Files map[string]string
}

func (c ProxyConfig) path() string {
	name := c.Name
	if name == "" {
		name = map[Kind]string{Nginx: "nginx.conf", Caddy: "Caddyfile", HAProxy: "haproxy.cfg"}[c.Kind]
	}
	return filepath.Join(c.Dir, name)
}

// write puts Text in Dir and returns the program, the file and the
// environment.
func (c ProxyConfig) write() (exe, cfg string, env []string, err error) {
	switch c.Kind {
	case Nginx, Caddy, HAProxy:
	default:
		return "", "", nil, fmt.Errorf("unknown proxy kind %q", c.Kind)
	}
	if exe, err = FindTool(string(c.Kind)); err != nil {
		return "", "", nil, err
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "logs"), 0o755); err != nil {
		return "", "", nil, err
	}
	cfg = c.path()
	if err := os.WriteFile(cfg, []byte(c.Text), 0o644); err != nil {
		return "", "", nil, err
	}
	for name, text := range c.Files {
		if name != filepath.Base(name) {
			return "", "", nil, fmt.Errorf("file %q: a plain name in Dir, please", name)
		}
		if err := os.WriteFile(filepath.Join(c.Dir, name), []byte(text), 0o644); err != nil {
			return "", "", nil, err
		}
	}
	// Caddy keeps its state under HOME and the XDG directories.
	env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.Dir, "XDG_DATA_HOME=" + c.Dir, "XDG_CONFIG_HOME=" + c.Dir}, c.Env...)
	return exe, cfg, env, nil
}

// nginxGlobals are what the reference nginx files leave to the command
// line, so that they run as a main configuration under any prefix.
func (c ProxyConfig) nginxGlobals(daemon bool) string {
	g := "pid " + filepath.Join(c.Dir, "nginx.pid") + "; error_log stderr;"
	if !daemon {
		g += " daemon off;"
	}
	return g
}

// Check runs the program's own check of the configuration (nginx -t,
// haproxy -c, caddy validate) and returns its output. A warning is a
// failure for nginx and HAProxy; Caddy's output is returned for the
// caller to judge (it warns about things such as http without TLS).
func (c ProxyConfig) Check() (string, error) {
	exe, cfg, env, err := c.write()
	if err != nil {
		return "", err
	}
	var args []string
	switch c.Kind {
	case Nginx:
		args = []string{"-t", "-p", c.Dir, "-c", cfg, "-e", "stderr", "-g", c.nginxGlobals(true)}
	case HAProxy:
		args = []string{"-c", "-f", cfg}
	case Caddy:
		args = []string{"validate", "--config", cfg, "--adapter", "caddyfile"}
	}
	cmd := exec.Command(exe, args...)
	cmd.Dir, cmd.Env = c.Dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v\n%s", c.Kind, strings.Join(args, " "), err, out)
	}
	for _, w := range []string{"[warn]", "[emerg]", "[WARNING]", "[ALERT]"} {
		if c.Kind != Caddy && strings.Contains(string(out), w) {
			return string(out), fmt.Errorf("%s %s passes with warnings:\n%s", c.Kind, strings.Join(args, " "), out)
		}
	}
	if c.Kind == Caddy && !strings.Contains(string(out), "Valid configuration") {
		return string(out), fmt.Errorf("caddy validate did not say the configuration is valid:\n%s", out)
	}
	return string(out), nil
}

// Proxy is a running proxy.
type Proxy struct {
	Kind Kind
	Proc *localproc.Proc
	// Config is the configuration file it runs.
	Config string
}

// Stop stops the proxy (SIGTERM, then SIGKILL after 10 s).
func (p *Proxy) Stop() { p.Proc.Stop(10 * time.Second) }

// Start runs the configuration in the foreground and waits until probe
// succeeds (nil: until each port accepts a TCP connection) and the
// process holds the listener on each of ports. The error wraps
// localproc.ErrPortTaken when a port was not the proxy's to have, and
// ErrToolMissing when the program is not installed.
func (c ProxyConfig) Start(ctx context.Context, ports []int, probe func(context.Context) error) (*Proxy, error) {
	exe, cfg, env, err := c.write()
	if err != nil {
		return nil, err
	}
	var args []string
	switch c.Kind {
	case Nginx:
		args = []string{"-p", c.Dir, "-c", cfg, "-e", "stderr", "-g", c.nginxGlobals(false)}
	case HAProxy:
		args = []string{"-db", "-f", cfg}
	case Caddy:
		args = []string{"run", "--config", cfg, "--adapter", "caddyfile"}
	}
	p := &localproc.Proc{Name: string(c.Kind), Path: exe, Args: args, LogPath: filepath.Join(c.Dir, string(c.Kind)+".log"), Dir: c.Dir, Env: env}
	if probe == nil {
		probe = tcpProbe(ports)
	}
	if err := p.Start(); err != nil {
		return nil, err
	}
	if err := localproc.Ready(ctx, p, ports, probe); err != nil {
		p.Stop(10 * time.Second)
		return nil, err
	}
	return &Proxy{Kind: c.Kind, Proc: p, Config: cfg}, nil
}

// tcpProbe succeeds when each port on 127.0.0.1 accepts a connection.
func tcpProbe(ports []int) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		for _, port := range ports {
			c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	}
}
