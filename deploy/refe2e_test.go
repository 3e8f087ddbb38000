package deploy

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/samlha/samlha/deploy/thirdparty"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/store/localproc"
)

// TestReferenceConfigsKeepLogins runs each reference balancer config in front
// of real replicas that keep login state in memory (the affinity strategy)
// and a real devidp, and drives scripted logins through it: every login must
// finish on the replica that began it, and the session must hold on the
// requests after it. The configs' addresses are rewritten to free ports;
// nothing else is changed.
func TestReferenceConfigsKeepLogins(t *testing.T) {
	if testing.Short() {
		t.Skip("starts devidp, three samlsp replicas and each balancer (-short)")
	}
	d := loadDockerfile(t)
	spPkg, _ := d.pkgOf("samlsp")
	idpPkg, _ := d.pkgOf("devidp")
	samlsp := bins.path(t, "samlsp", spPkg)
	devidp := bins.path(t, "devidp", idpPkg)

	dir := t.TempDir()
	proxyPort, idpPort := freePort(t), freePort(t)
	rootURL := "http://127.0.0.1:" + proxyPort
	keys := filepath.Join(dir, "keys")
	if out, err := exec.Command(samlsp, "keygen", "--dir", keys).CombinedOutput(); err != nil {
		t.Fatalf("samlsp keygen: %v\n%s", err, out)
	}
	idpURL := "http://127.0.0.1:" + idpPort
	startProc(t, dir, "devidp", nil, devidp, "--listen", "127.0.0.1:"+idpPort, "--public-url", idpURL,
		"--sp-metadata", rootURL+"/saml/metadata", "--register-timeout", "0", "--data-dir", filepath.Join(dir, "idp"))
	replace := map[string]string{refListen: "127.0.0.1:" + proxyPort}
	for i, addr := range refReplicas {
		port := freePort(t)
		replace[addr] = "127.0.0.1:" + port
		id := "sp-" + strconv.Itoa(i+1)
		startProc(t, dir, id, nil, samlsp, "--instance-id", id, "--listen", "127.0.0.1:"+port, "--root-url", rootURL,
			"--idp-metadata-url", idpURL+"/metadata", "--sp-key", filepath.Join(keys, "sp.key"),
			"--sp-cert", filepath.Join(keys, "sp.crt"), "--store", "memory")
		waitHTTP(t, "http://127.0.0.1:"+port+"/readyz", 30*time.Second)
	}

	balancers := []struct {
		kind thirdparty.Kind
		conf string
		// spread: logins from one address must still reach several
		// replicas (not for ip_hash, which pins all of loopback to one).
		spread bool
	}{
		{thirdparty.HAProxy, "haproxy.cfg", true},
		{thirdparty.Nginx, "nginx.conf", false},
		{thirdparty.Caddy, "Caddyfile", true},
	}
	// The control: the HAProxy config without its cookie is plain round
	// robin, and the same logins must then fail across replicas, or this
	// test would prove nothing.
	t.Run("haproxy-without-cookie", func(t *testing.T) {
		var out []string
		for _, line := range strings.Split(placeConf(t, "haproxy.cfg", replace), "\n") {
			trimmed := strings.TrimSpace(line)
			switch {
			case strings.HasPrefix(trimmed, "cookie SRV"):
				continue
			case strings.HasPrefix(trimmed, "server "):
				line, _, _ = strings.Cut(line, " cookie ")
			}
			out = append(out, line)
		}
		runProxy(t, thirdparty.HAProxy, strings.Join(out, "\n"), proxyPort, rootURL+"/healthz")
		waitHTTP(t, idpURL+"/readyz", 60*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		failed := 0
		for i := range 6 {
			b := sptest.NewBrowser(sptest.Options{RequestTimeout: 10 * time.Second})
			if res := b.Login(ctx, rootURL+"/app", "alice", "alice-password"); !res.OK {
				failed++
				if res.Cause == "" {
					t.Errorf("login %d failed without a cause: %v", i, res.Err)
				}
			}
			b.CloseIdleConnections()
		}
		t.Logf("%d of 6 logins failed through round robin, as they should", failed)
		if failed == 0 {
			t.Error("every login succeeded through round robin over memory stores: the affinity check above cannot tell a working config from a broken one")
		}
	})

	for _, bal := range balancers {
		t.Run(string(bal.kind), func(t *testing.T) {
			// SAMLHA_LB_SECRET keys the Caddyfile's cookie HMAC.
			runReference(t, bal.kind, bal.conf, replace, proxyPort, rootURL+"/healthz", "SAMLHA_LB_SECRET=e2e-secret")
			// The IdP is ready once it has the SP metadata, fetched
			// through the balancer.
			waitHTTP(t, idpURL+"/readyz", 60*time.Second)
			driveLogins(t, rootURL, 12, bal.spread)
		})
	}
}

// driveLogins logs n browsers in, each then asking for /app three more
// times: all must succeed on the replica that began the login.
func driveLogins(t *testing.T, rootURL string, n int, spread bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	used := map[string]int{}
	for i := range n {
		user := []string{"alice", "bob"}[i%2]
		b := sptest.NewBrowser(sptest.Options{RequestTimeout: 10 * time.Second})
		res := b.Login(ctx, rootURL+"/app", user, user+"-password")
		if !res.OK {
			t.Fatalf("login %d (%s) failed: cause %s: %v (began on %s, ACS on %s)", i, user, res.Cause, res.Err, res.StartInstance, res.ACSInstance)
		}
		if res.StartInstance != res.ACSInstance || res.ACSInstance != res.FinishInstance {
			t.Errorf("login %d moved between replicas: began %s, ACS %s, finished %s", i, res.StartInstance, res.ACSInstance, res.FinishInstance)
		}
		used[res.ACSInstance]++
		for j := range 3 {
			page, err := b.Get(ctx, rootURL+"/app")
			if err != nil {
				t.Fatalf("login %d, request %d after it: %v", i, j, err)
			}
			if inst := page.Header.Get("X-Samlha-Instance"); page.Status != http.StatusOK || inst != res.ACSInstance {
				t.Errorf("login %d, request %d after it: status %d on %s, want 200 on %s (cause %q)", i, j, page.Status, inst, res.ACSInstance, page.Header.Get("X-Samlha-Cause"))
			}
		}
		b.CloseIdleConnections()
	}
	if spread && len(used) < 2 {
		t.Errorf("all %d logins went to %v: the balancer did not balance", n, used)
	}
	t.Logf("logins per replica: %v", used)
}

// freePort is a port for a child to bind: localproc's, never handed out
// twice in this process and below the kernel's ephemeral range, where a
// listen-and-close port would be given to the next caller too.
func freePort(t *testing.T) string {
	t.Helper()
	return strconv.Itoa(localproc.Port())
}

// startProc starts a program with a minimal environment (none of the
// caller's SAMLHA_* variables) and its output in dir/name.log, and stops it
// (its whole process group) at the end of the test, printing the log if the
// test failed.
func startProc(t *testing.T, dir, name string, env []string, exe string, args ...string) {
	t.Helper()
	startProcCmd(t, dir, name, env, exe, args...)
}

// startProcCmd is startProc, returning the process (to kill it early).
func startProcCmd(t *testing.T, dir, name string, env []string, exe string, args ...string) *exec.Cmd {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("--- %s log (tail) ---\n%s", name, b)
		}
	})
	select {
	case err := <-done:
		t.Fatalf("%s exited at once: %v (log in %s)", name, err, logPath)
	case <-time.After(50 * time.Millisecond):
	}
	return cmd
}

// waitHTTP waits until url answers 200, or fails the test at the deadline.
func waitHTTP(t *testing.T, url string, within time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within %v (last: %s)", url, within, last)
}
