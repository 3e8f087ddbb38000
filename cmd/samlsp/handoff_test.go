package main

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/sp/devidp"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/sp/sptest/devidptest"
	"github.com/samlha/samlha/store/redis/redistest"
)

func TestStoreHandoffFlagProblems(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", "redis", "--store-handoff", "redis://127.0.0.1:6379/0"}, "--store-handoff: moves a memory or stateless replica to a shared store: the store is redis already"},
		{[]string{"--store", "stateless", "--accept-stateless"}, "--accept-stateless: a stateless replica accepts signed cookies anyway"},
		{[]string{"--store", "memory", "--accept-stateless"}, "--accept-stateless: needs a shared store (redis)"},
		{[]string{"--store", "stateless", "--store-handoff", "memory://"}, `--store-handoff: "memory://" is another process's memory`},
		{[]string{"--store-handoff", "memory://"}, `--store-handoff: "memory://" is another process's memory`},
		{[]string{"--store-handoff", "redix://:hunter2@127.0.0.1/0"}, `--store-handoff: store: unknown scheme "redix"`},
	} {
		var out bytes.Buffer
		err := run(context.Background(), tc.args, &out, &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want a problem %q", tc.args, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%v: the password is in the problem: %v", tc.args, err)
		}
	}
}

// The move itself, with the binary's own code: a memory replica with
// --store-handoff takes a login to the end and another to the IdP, gets
// SIGTERM, and a replica on --store redis at the same address finishes the
// pending login and keeps the finished one's session.
func TestHandoffOnShutdownKeepsLoginsAndSessions(t *testing.T) {
	rs := newRolling(t)
	root, srv, idp := rs.root, rs.redis, rs.idp
	t.Setenv("SAMLHA_STORE_HANDOFF", srv.URL()) // the environment twin
	start, stop := rs.start, rs.stop

	cancelA, doneA, logsA := start("sp-1", "--store", "memory")
	_, md := get(t, root+"/saml/metadata")
	if err := idp.RegisterSPMetadata("samlsp", []byte(md)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := sptest.NewBrowser(sptest.Options{})
	if res := done.Login(ctx, root+"/app", "alice", "alice-password"); !res.OK || res.FinishInstance != "sp-1" {
		t.Fatalf("login on the memory replica: %+v", res)
	}
	pending := sptest.NewBrowser(sptest.Options{})
	form, res, err := pending.LoginUntilACS(ctx, root+"/app", "bob", "bob-password")
	if err != nil || form == nil {
		t.Fatalf("a login up to the IdP's POST: %v %+v", err, res)
	}
	stop(cancelA, doneA)
	if !strings.Contains(logsA.String(), `"msg":"handed the memory store's state to the shared store"`) {
		t.Fatalf("sp-1 did not say it handed off:\n%s", logsA.String())
	}

	cancelB, doneB, _ := start("sp-2", "--store", "redis", "--store-url", srv.URL(), "--store-handoff", "")
	defer stop(cancelB, doneB)
	if res := pending.Submit(ctx, form); !res.OK || res.FinishInstance != "sp-2" {
		t.Errorf("the login begun on sp-1 (memory), finished on sp-2 (redis): %+v", res)
	}
	page, err := done.Get(ctx, root+"/app")
	if err != nil || page.Status != http.StatusOK || len(page.Hops) != 1 || page.Header.Get(sptest.HeaderUser) != "alice" {
		t.Errorf("the session made on sp-1, used on sp-2: %v, status %d after %d hops, user %q", err, page.Status, len(page.Hops), page.Header.Get(sptest.HeaderUser))
	}
}

// rolling runs samlsp replicas one after another at one address, as a
// rolling deploy replaces them, with one key pair, IdP and Redis.
type rolling struct {
	t      *testing.T
	root   string
	redis  *redistest.Server
	idp    *devidptest.IdP
	common []string
	out    bytes.Buffer
}

func newRolling(t *testing.T) *rolling {
	keys := t.TempDir()
	rs := &rolling{t: t}
	if err := run(context.Background(), []string{"keygen", "--dir", keys}, &rs.out, &rs.out); err != nil {
		t.Fatal(err)
	}
	rs.redis = redistest.Start(t)
	addr := freeAddr(t)
	rs.root = "http://" + addr
	rs.idp = devidptest.Start(t, devidp.Config{})
	rs.common = []string{"--listen", addr, "--root-url", rs.root, "--idp-metadata-url", rs.idp.URL + "/metadata",
		"--sp-key", filepath.Join(keys, "sp.key"), "--sp-cert", filepath.Join(keys, "sp.crt"), "--log-format", "json",
		"--session-key", "a session key of sixteen bytes or more", "--shutdown-grace", "2s"}
	return rs
}

// start runs replica id with args and waits until it is ready.
func (rs *rolling) start(id string, args ...string) (context.CancelFunc, chan error, *bytes.Buffer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &bytes.Buffer{}
	go func() {
		done <- run(ctx, append(append([]string{"--instance-id", id}, rs.common...), args...), &rs.out, logs)
	}()
	waitStatus(rs.t, rs.root+"/readyz", 200)
	return cancel, done, logs
}

// stop stops a replica as SIGTERM does and waits for it.
func (rs *rolling) stop(cancel context.CancelFunc, done chan error) {
	cancel()
	select {
	case err := <-done:
		if err != nil {
			rs.t.Fatalf("run returned %v after a graceful stop", err)
		}
	case <-time.After(15 * time.Second):
		rs.t.Fatal("no shutdown within 15s")
	}
}
