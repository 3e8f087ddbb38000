package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/store/localproc"
	"github.com/samlha/samlha/store/redis/redistest"
)

// readmeBlock returns the shell block README.md marks with the comment
// <!-- quickstart:NAME ... -->.
func readmeBlock(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- quickstart:" + name + "[^>]*-->\n```sh\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatalf("README.md has no quickstart:%s block", name)
	}
	return string(m[1])
}

// README's gateway quick start works as written, copy-pasted: the block
// runs in bash in an empty directory, with `go run ./cmd/X` replaced by
// the same programs built once, and only its addresses moved (free ports,
// a private redis-server). alice logs in through the gateway to the demo
// app, which verifies her identity JWT; /admin is refused to her.
func TestREADMEGatewayQuickStart(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	script := readmeBlock(t, "gateway")
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin, "./cmd/samlsp", "./cmd/devidp", "./cmd/demoapp")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	redis := redistest.Start(t)
	gw, idp, app := localproc.Port(), localproc.Port(), localproc.Port()
	for from, to := range map[string]string{
		"go run ./cmd/":                  bin + "/",
		"127.0.0.1:8080":                 fmt.Sprint("127.0.0.1:", gw),
		"127.0.0.1:9000":                 fmt.Sprint("127.0.0.1:", idp),
		"127.0.0.1:3000":                 fmt.Sprint("127.0.0.1:", app),
		"redis://127.0.0.1:6379/0":       redis.URL(),
		"This string is never in README": "",
	} {
		script = strings.ReplaceAll(script, from, to)
	}
	dir := t.TempDir()
	var out bytes.Buffer
	cmd := exec.Command("bash", "-euc", script)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("--- the quick start's output ---\n%s", out.String())
		}
	})
	root := fmt.Sprint("http://127.0.0.1:", gw)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(root + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("the quick start ended before the gateway was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the gateway was not ready within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// devidp registers the gateway from its metadata once both are up.
	var page *sptest.Page
	for {
		b := sptest.NewBrowser(sptest.Options{SuccessPath: "/"})
		b.Login(ctx, root+"/", "alice", "alice-password")
		var err error
		page, err = b.Get(ctx, root+"/")
		if err == nil && page.Status == http.StatusOK {
			admin, err := b.Get(ctx, root+"/admin")
			if err != nil || admin.Status != http.StatusForbidden || admin.Header.Get("X-Samlha-Cause") != "forbidden" {
				t.Fatalf("alice at /admin: %v %+v", err, admin)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("alice could not log in through the quick start's gateway: %v %+v", err, page)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !bytes.Contains(page.Body, []byte("alice")) {
		t.Fatalf("the demo app's page does not name alice:\n%s", page.Body)
	}
	if _, err := os.Stat(filepath.Join(dir, "sp-keys", "sp.key")); err != nil {
		t.Fatalf("the quick start's keygen wrote no key where its later commands read it: %v", err)
	}
}
