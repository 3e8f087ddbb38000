package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/sp/devidp"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/sp/sptest/devidptest"
	"github.com/samlha/samlha/store/redis/redistest"
)

func TestHelpNamesEveryFlagAndTwin(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, &out, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, want := range []string{"--store", "$SAMLHA_STORE", "--store-url", "$SAMLHA_STORE_URL", "--sp-key", "--instance-id",
		"--idp-metadata-url", "--root-url", "redis-sentinel://", "samlsp keygen", "stateless",
		"--session-key", "$SAMLHA_SESSION_KEY", "--session-key-file", "$SAMLHA_SESSION_KEY_FILE",

		"--metrics-listen", "$SAMLHA_METRICS_LISTEN", "--trusted-proxies", "$SAMLHA_TRUSTED_PROXIES", "--max-return-url",
		"--login-rate-per-client", "--login-burst-per-client", "--login-rate", "--login-burst", "--max-pending-logins",
		"$SAMLHA_MAX_PENDING_LOGINS", "--rate-limit-clients", "--max-pending-logins-per-client", "$SAMLHA_MAX_PENDING_LOGINS_PER_CLIENT"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestProblemsReportedAtOnce(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--store", "mongodb", "--instance-id", "bad id!", "--root-url", "ftp://x",
		"--session-key", "a key of sixteen bytes or more", "--session-key", "tooshort", "--session-key-file", "/nonexistent/keys",

		"--trusted-proxies", "10.0.0.0/8,not-a-cidr", "--max-return-url", "9000", "--login-rate", "-1", "--login-burst-per-client", "0",
		"--max-pending-logins", "-3", "--max-pending-logins-per-client", "-7"}, &out, &out)
	if err == nil {
		t.Fatal("bad flags accepted")
	}
	for _, want := range []string{"--sp-key", "--idp-metadata-url", "--store \"mongodb\"", "--instance-id", "--root-url",
		"--session-key #2", "--session-key-file",

		`--trusted-proxies: "not-a-cidr"`, "--max-return-url: 9000 must be 1 to 8192", "--login-rate must be", "--login-burst-per-client must be at least 1",
		"--max-pending-logins must not be negative", "--max-pending-logins-per-client: -7 must not be negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(uniq(lines)) {
		t.Errorf("a problem is reported twice (two validators?):\n%v", err)
	}
	if strings.Contains(err.Error(), "tooshort") || strings.Contains(err.Error(), "--session-key #1") {
		t.Errorf("error prints a secret or blames a good key:\n%v", err)
	}
}

func TestStoreURLMustMatchStore(t *testing.T) {
	for _, tc := range []struct{ mode, url, want string }{
		{"memory", "redis://:hunter2@127.0.0.1:6379/0", "--store memory takes a memory:// --store-url"},
		{"redis", "memory://?max_entries=10&password=hunter2", "--store redis takes a redis://, redis-cluster://, redis-sentinel://, rediss:// --store-url"},
		// A scheme no backend registered: the registry names the known ones.
		{"redis", "redix://:hunter2@127.0.0.1:6379/0", `--store-url: store: unknown scheme "redix"`},
		{"memory", "mongodb://:hunter2@db", "known: memory, redis, redis-cluster, redis-sentinel, rediss"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), []string{"--store", tc.mode, "--store-url", tc.url}, &out, &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--store %s --store-url %s: err = %v, want it to say %q", tc.mode, tc.url, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the password leaked into the error: %v", err)
		}
	}
}

// A store call may take --store-timeout plus the store's failover budget;
// a --write-timeout no longer than that would cut a login held through a
// failover off before the store answers. Refused at start, with the three
// figures; a mistyped store URL parameter is reported with the rest.
func TestWriteTimeoutCoversAStoreCall(t *testing.T) {
	sentinel := "redis-sentinel://:hunter2@127.0.0.1:26379/mymaster"
	for _, tc := range []struct {
		url, storeTimeout, writeTimeout string
		want                            string // "" when the timeouts are fine
	}{
		{sentinel, "2s", "5s", "--write-timeout 5s must be longer than a store call may take, --store-timeout 2s plus the --store-url's failover_budget 5s"},
		{sentinel, "2s", "7s", "--write-timeout 7s must be longer"},
		{sentinel, "2s", "8s", ""},
		{sentinel + "?failover_budget=0s", "2s", "3s", ""},
		{sentinel + "?failover_budget=20s", "2s", "30s", ""},
		{"redis://:hunter2@127.0.0.1:6379/0", "2s", "2s", "--write-timeout 2s must be longer than a store call may take, --store-timeout 2s plus the --store-url's failover_budget 0s"},
		{"redis://:hunter2@127.0.0.1:6379/0", "2s", "3s", ""},
		{"redis://:hunter2@127.0.0.1:6379/0?bogus=1", "2s", "30s", `--store-url: redis: unknown parameter "bogus"`},
	} {
		var out bytes.Buffer
		err := run(context.Background(), []string{"--store", "redis", "--store-url", tc.url,
			"--store-timeout", tc.storeTimeout, "--write-timeout", tc.writeTimeout}, &out, &out)
		if err == nil {
			t.Fatalf("%s: run without --sp-key started", tc.url) // the other flags are missing on purpose
		}
		msg := err.Error()
		switch {
		case tc.want == "" && strings.Contains(msg, "--write-timeout"):
			t.Errorf("%s --store-timeout %s --write-timeout %s: refused:\n%v", tc.url, tc.storeTimeout, tc.writeTimeout, err)
		case tc.want != "" && !strings.Contains(msg, tc.want):
			t.Errorf("%s --store-timeout %s --write-timeout %s: err lacks %q:\n%v", tc.url, tc.storeTimeout, tc.writeTimeout, tc.want, err)
		}
		if strings.Contains(msg, "hunter2") {
			t.Errorf("the password leaked into the error: %v", err)
		}
	}
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"keygen", "--dir", dir}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"sp.key", "sp.crt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, "sp.key")); st.Mode().Perm() != 0o600 {
		t.Errorf("sp.key mode %v, want 0600", st.Mode().Perm())
	}
	err := run(context.Background(), []string{"keygen", "--dir", dir}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("keygen over existing files: %v", err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitStatus(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d in time (last: %v %v)", url, want, resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The binary's wiring, end to end: flags and their environment twins, a
// real store, the IdP metadata fetched over HTTP, a login, graceful stop.
func TestServeLoginAndShutdown(t *testing.T) {
	keys := t.TempDir()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"keygen", "--dir", keys}, &out, &out); err != nil {
		t.Fatal(err)
	}
	srv := redistest.Start(t)
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	idp := devidptest.Start(t, devidp.Config{})
	root := "http://" + addr
	t.Setenv("SAMLHA_STORE", "redis")
	t.Setenv("SAMLHA_STORE_URL", srv.URL())
	t.Setenv("SAMLHA_INSTANCE_ID", "sp-env")
	t.Setenv("SAMLHA_SESSION_KEY", "a session key of sixteen bytes or more")
	t.Setenv("SAMLHA_METRICS_LISTEN", metricsAddr)
	t.Setenv("SAMLHA_TRUSTED_PROXIES", "192.0.2.0/24,127.0.0.1")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- run(ctx, []string{"--listen", addr, "--root-url", root, "--idp-metadata-url", idp.URL + "/metadata",
			"--sp-key", filepath.Join(keys, "sp.key"), "--sp-cert", filepath.Join(keys, "sp.crt"), "--log-format", "json"},
			&out, &logs)
	}()
	waitStatus(t, root+"/readyz", 200)

	resp, err := http.Get(root + "/saml/metadata")
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	_, _ = md.ReadFrom(resp.Body)
	resp.Body.Close()
	if err := idp.RegisterSPMetadata("samlsp", md.Bytes()); err != nil {
		t.Fatal(err)
	}
	b := sptest.NewBrowser(sptest.Options{})
	lctx, lcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer lcancel()
	res := b.Login(lctx, root+"/app", "alice", "alice-password")
	if !res.OK || res.FinishInstance != "sp-env" {
		t.Fatalf("login through the binary: %+v", res)
	}
	// Metrics are on their own listener, and only there.
	if code, body := get(t, "http://"+metricsAddr+"/metrics"); code != 200 || !strings.Contains(body, "samlha_sp_logins_succeeded_total 1") ||
		!strings.Contains(body, "samlha_sp_pending_logins_limit 20000") {
		t.Errorf("--metrics-listen /metrics: %d, want 200 with the SP's series:\n%.2000s", code, body)
	}
	if code, _ := get(t, root+"/metrics"); code != http.StatusNotFound {
		t.Errorf("public /metrics: %d, want 404", code)
	}
	if code, _ := get(t, "http://"+metricsAddr+"/app"); code != http.StatusNotFound {
		t.Errorf("metrics listener serves /app: %d, want 404", code)
	}
	// The request line and headers are bounded: 431 well past 64 KiB
	// (net/http reads with some slack over MaxHeaderBytes), where Go's
	// default would read 1 MiB.
	if code, _ := get(t, root+"/?q="+strings.Repeat("x", 2*maxHeaderBytes)); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a %d-byte request line: %d, want 431", 2*maxHeaderBytes, code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after a graceful stop", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no shutdown within 15s")
	}
	if !strings.Contains(logs.String(), `"session_keys":"--session-key (1 in the ring)"`) {
		t.Errorf("logs: the session key from $SAMLHA_SESSION_KEY is not in use:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "sixteen bytes") {
		t.Errorf("logs: the session key is printed:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"samlsp starting"`) || strings.Contains(logs.String(), "SAMLResponse") {
		t.Errorf("logs: want JSON start line and no SAML payloads:\n%s", logs.String())
	}
	// Every line names the replica, so a merged log of several can be read.
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		if rec["instance"] != "sp-env" {
			t.Errorf("log line without the instance: %s", line)
		}
	}
}

func TestStoreWaitGivesUp(t *testing.T) {
	keys := t.TempDir()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"keygen", "--dir", keys}, &out, &out); err != nil {
		t.Fatal(err)
	}
	dead := freeAddr(t) // nothing listens there
	start := time.Now()
	err := run(context.Background(), []string{"--store", "redis", "--store-url", fmt.Sprintf("redis://:secret@%s/0", dead),
		"--store-wait", "1s", "--idp-metadata-url", "http://127.0.0.1:1/metadata",
		"--sp-key", filepath.Join(keys, "sp.key"), "--sp-cert", filepath.Join(keys, "sp.crt"), "--listen", freeAddr(t)}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "did not answer within --store-wait") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("password leaked: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %v to give up after --store-wait 1s", time.Since(start))
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// --max-connections: the public listener holds at most that many
// connections; the next is served only once one of them closes.
func TestMaxConnections(t *testing.T) {
	keys := t.TempDir()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"keygen", "--dir", keys}, &out, &out); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		// The IdP never answers: /healthz needs none.
		done <- run(ctx, []string{"--listen", addr, "--idp-metadata-url", "http://127.0.0.1:1/metadata", "--max-connections", "2",
			"--sp-key", filepath.Join(keys, "sp.key"), "--sp-cert", filepath.Join(keys, "sp.crt"), "--log-level", "error"}, &out, &out)
	}()
	defer func() {
		cancel()
		<-done
	}()
	fresh := func(timeout time.Duration) *http.Client {
		return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := fresh(time.Second).Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("samlsp did not answer: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Two idle connections, accepted (a request on each proves it).
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("held connection: %v %v", resp, err)
		}
		resp.Body.Close()
		held = append(held, c)
	}
	// A third is not served while they are open...
	if resp, err := fresh(500 * time.Millisecond).Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a third connection was served while --max-connections 2 were open")
	}
	// ...and is once one closes.
	held[0].Close()
	resp, err := fresh(10 * time.Second).Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("after a held connection closed: %v", err)
	}
	resp.Body.Close()
}

// --read-header-timeout cuts off a client that trickles its headers
// (slowloris), and --idle-timeout one that holds a keep-alive connection.
func TestSlowClientsCutOff(t *testing.T) {
	keys := t.TempDir()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"keygen", "--dir", keys}, &out, &out); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", addr, "--idp-metadata-url", "http://127.0.0.1:1/metadata",
			"--read-header-timeout", "300ms", "--idle-timeout", "300ms",
			"--sp-key", filepath.Join(keys, "sp.key"), "--sp-cert", filepath.Join(keys, "sp.crt"), "--log-level", "error"}, &out, &out)
	}()
	defer func() {
		cancel()
		<-done
	}()
	dial := func() net.Conn {
		deadline := time.Now().Add(15 * time.Second)
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatalf("samlsp did not listen: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// closedWithin reports whether the server closes c within d (the
	// reader sees EOF or a reset), reading and discarding what it sends.
	closedWithin := func(c net.Conn, d time.Duration) bool {
		_ = c.SetReadDeadline(time.Now().Add(d))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}

	slow := dial()
	defer slow.Close()
	if _, err := slow.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")); err != nil { // and never the blank line
		t.Fatal(err)
	}
	if !closedWithin(slow, 5*time.Second) {
		t.Error("a client trickling its headers was not cut off within 5s (--read-header-timeout 300ms)")
	}

	idle := dial()
	defer idle.Close()
	if _, err := idle.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("request on the keep-alive connection: %v %v", resp, err)
	}
	resp.Body.Close()
	if !closedWithin(idle, 5*time.Second) {
		t.Error("an idle keep-alive connection was held past 5s (--idle-timeout 300ms)")
	}
}

func uniq(lines []string) map[string]bool {
	m := map[string]bool{}
	for _, l := range lines {
		m[l] = true
	}
	return m
}
