package thirdparty

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/samlha/samlha/store/localproc"
)

//go:embed echo.php
var echoPHP []byte

// EchoApp is an application that reads headers as CGI does, running in
// a process of its own.
type EchoApp struct {
	// URL is "http://127.0.0.1:port".
	URL  string
	Port int
	Proc *localproc.Proc
	// gates is where OpenGate puts the files ?gate=NAME waits for.
	gates string
}

// EchoVars is the JSON an EchoApp answers with.
type EchoVars struct {
	Method string `json:"method"`
	URI    string `json:"uri"`
	// Vars are the request's HTTP_* variables, as the application sees
	// them: HTTP_X_GROUPS for X-Groups, x-groups and X_Groups alike.
	Vars       map[string]string `json:"vars"`
	RemoteAddr string            `json:"remote_addr"`
	BodyLength int64             `json:"body_length"`
	BodySHA256 string            `json:"body_sha256"`
}

// phpWorkers is how many requests the built-in server handles at once
// (a gated stream holds one).
const phpWorkers = 4

// StartPHPEcho serves echo.php with PHP's built-in server (php -S, Debian
// package php-cli) on 127.0.0.1, from dir, until Stop. Its body limits are
// lifted (post_max_size=0) and its output is unbuffered.
func StartPHPEcho(ctx context.Context, dir string) (*EchoApp, error) {
	php, err := FindTool("php")
	if err != nil {
		return nil, err
	}
	gates := filepath.Join(dir, "gates")
	if err := os.MkdirAll(gates, 0o755); err != nil {
		return nil, err
	}
	script := filepath.Join(dir, "echo.php")
	if err := os.WriteFile(script, echoPHP, 0o644); err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	p, ports, err := localproc.Launch(ctx, 1, 3, func(ports []int) (*localproc.Proc, []string) {
		return &localproc.Proc{Name: "php", Path: php, Dir: dir, LogPath: filepath.Join(dir, "php.log"),
			Env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "SAMLHA_ECHO_GATES=" + gates,
				"PHP_CLI_SERVER_WORKERS=" + strconv.Itoa(phpWorkers)},
			Args: []string{"-n", "-d", "post_max_size=0", "-d", "output_buffering=0", "-d", "implicit_flush=1",
				"-d", "max_execution_time=0", "-d", "memory_limit=256M",
				"-S", "127.0.0.1:" + strconv.Itoa(ports[0]), script}}, nil
	}, func(_ *localproc.Proc, ports []int) func(context.Context) error {
		return localproc.HTTPProbe(client, "http://127.0.0.1:"+strconv.Itoa(ports[0])+"/healthz")
	})
	if err != nil {
		return nil, fmt.Errorf("php -S: %w", err)
	}
	return &EchoApp{URL: "http://127.0.0.1:" + strconv.Itoa(ports[0]), Port: ports[0], Proc: p, gates: gates}, nil
}

// OpenGate lets the stream of ?gate=name finish.
func (a *EchoApp) OpenGate(name string) error {
	if name == "" || filepath.Base(name) != name {
		return errors.New("gate name must be a plain file name")
	}
	return os.WriteFile(filepath.Join(a.gates, name), nil, 0o644)
}

// Stop stops the server and its workers.
func (a *EchoApp) Stop() { a.Proc.Stop(10 * time.Second) }
