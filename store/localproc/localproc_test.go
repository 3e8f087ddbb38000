package localproc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as the child process: LOCALPROC_CHILD says what
// to be.
func TestMain(m *testing.M) {
	switch mode, arg, _ := strings.Cut(os.Getenv("LOCALPROC_CHILD"), "="); mode {
	case "":
		os.Exit(m.Run())
	case "serve": // serve /healthz on 127.0.0.1:arg
		ln, err := net.Listen("tcp", "127.0.0.1:"+arg)
		if err != nil {
			fmt.Println("listen:", err)
			os.Exit(1)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Header().Set("X-Who", "child") })
		fmt.Println(http.Serve(ln, mux))
		os.Exit(1)
	case "crash":
		fmt.Println("boom: the configuration is wrong")
		os.Exit(3)
	case "sleep":
		time.Sleep(time.Minute)
		os.Exit(0)
	}
}

func child(t *testing.T, mode string) *Proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{Name: "child-" + mode, Path: exe, LogPath: filepath.Join(t.TempDir(), "child.log"),
		Env: append(os.Environ(), "LOCALPROC_CHILD="+mode)}
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	return p
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// Port never gives the same port twice, and stays in its range, out of the
// block kept for fixed ports.
func TestPortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 500 {
		p := Port()
		if seen[p] {
			t.Fatalf("port %d given twice", p)
		}
		if p < portMin || p > portMax || (p >= reservedMin && p <= reservedMax) {
			t.Fatalf("port %d out of range", p)
		}
		seen[p] = true
	}
}

// Port skips a port someone listens on.
func TestPortSkipsListeners(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the listener table is read from /proc")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if !listeningPorts()[ln.Addr().(*net.TCPAddr).Port] {
		t.Fatalf("listeningPorts does not show our own listener on %s", ln.Addr())
	}
}

// A port collision: the first port Launch tries is held by someone else;
// the child fails to bind, Launch sees ErrPortTaken and moves to a new
// port, where the child is proven to be the one listening.
func TestLaunchMovesOffATakenPort(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldPort := held.Addr().(*net.TCPAddr).Port
	rounds := 0
	var procs []*Proc
	p, ports, err := Launch(ctx(t), 1, 3, func(ports []int) (*Proc, []string) {
		rounds++
		if rounds == 1 {
			ports[0] = heldPort
		}
		c := child(t, "serve="+strconv.Itoa(ports[0]))
		procs = append(procs, c)
		return c, nil
	}, func(_ *Proc, ports []int) func(context.Context) error {
		return HTTPProbe(nil, fmt.Sprintf("http://127.0.0.1:%d/healthz", ports[0]))
	})
	if err != nil {
		t.Fatalf("Launch: %v\nfirst child's log:\n%s", err, procs[0].LogTail(1000))
	}
	if rounds != 2 || ports[0] == heldPort {
		t.Fatalf("rounds %d, port %d (held %d): want a second round on another port", rounds, ports[0], heldPort)
	}
	if !procs[0].BindFailed() {
		t.Errorf("the first child did not record a bind failure:\n%s", procs[0].LogTail(1000))
	}
	if !p.Running() {
		t.Error("the launched child is not running")
	}
	if err := Owns(p.Pid(), ports[0]); err != nil {
		t.Error(err)
	}
}

// A stranger answering the probe is not readiness: the child never bound
// the port, someone else serves it, and Ready says the port is taken.
func TestReadyRejectsAStranger(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ownership is read from /proc")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	p := child(t, "sleep")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	err = Ready(ctx(t), p, []int{port}, HTTPProbe(nil, fmt.Sprintf("http://127.0.0.1:%d/healthz", port)))
	if !errors.Is(err, ErrPortTaken) {
		t.Fatalf("Ready with a stranger on the port: %v, want ErrPortTaken", err)
	}
	if p.Running() {
		t.Error("the child was left running")
	}
}

// A child that crashes before it is ready: Ready returns at once, quoting
// its log, and it is not taken for a port collision.
func TestReadyReportsACrash(t *testing.T) {
	p := child(t, "crash")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	err := Ready(ctx(t), p, []int{Port()}, func(context.Context) error { return errors.New("not yet") })
	if err == nil || errors.Is(err, ErrPortTaken) || !strings.Contains(err.Error(), "boom: the configuration is wrong") {
		t.Fatalf("Ready on a crashing child: %v", err)
	}
	if !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("the error does not give the exit status: %v", err)
	}
}

// Stop ends a child and Start runs it again (a restart), appending to its
// log.
func TestStopAndRestart(t *testing.T) {
	p := child(t, "sleep")
	for i := range 2 {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		if err := p.Start(); err == nil {
			t.Fatal("a second Start of a running process succeeded")
		}
		p.Stop(5 * time.Second)
		if p.Running() {
			t.Fatalf("round %d: running after Stop", i)
		}
	}
	if n := strings.Count(p.LogTail(10000), "exited"); n != 2 {
		t.Errorf("log records %d exits, want 2:\n%s", n, p.LogTail(10000))
	}
}

// The CA's server certificate verifies for every name it was made for.
func TestCA(t *testing.T) {
	ca, err := NewCA(t.TempDir(), "sp.example.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(ca.CertFile, ca.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	for _, name := range []string{"sp.example.test", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	b, _ := os.ReadFile(ca.CAFile)
	if blk, _ := pem.Decode(b); blk == nil || blk.Type != "CERTIFICATE" {
		t.Errorf("%s is not a PEM certificate", ca.CAFile)
	}
}

func TestEnvWithout(t *testing.T) {
	t.Setenv("SAMLHA_ENVWITHOUT_TEST", "1")
	t.Setenv("ENVWITHOUT_TEST_KEPT", "2")
	env := EnvWithout("SAMLHA_")
	var kept bool
	for _, kv := range env {
		if strings.HasPrefix(kv, "SAMLHA_") {
			t.Errorf("%s passed to the child", kv)
		}
		kept = kept || kv == "ENVWITHOUT_TEST_KEPT=2"
	}
	if !kept {
		t.Error("a variable without the prefix was dropped")
	}
}
