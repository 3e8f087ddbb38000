package sp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/relaystate"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/store/redis/redistest"
)

// needTool skips the test without tool, or fails it under CI=true.
func needTool(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not on PATH (CI=true: install it)", tool)
		}
		t.Skipf("%s is not on PATH", tool)
	}
	return p
}

// After a real login through two replicas, what an operator (or a thief of
// a dump) sees with `redis-cli --scan` and GET holds no NameID and no
// attribute value in clear, in any key or value.
func TestE2ERedisDumpRevealsNoIdentity(t *testing.T) {
	t.Parallel()
	cli := needTool(t, "redis-cli")
	srv := redistest.Start(t)
	if srv.Dir() == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test reads every key, so it needs a private redis-server, not REDIS_URL")
		}
		t.Skip("this test reads every key, so it needs a private redis-server, not REDIS_URL")
	}
	top := startTopology(t, topologyConfig{Replicas: 2, Store: redisStores(srv.URL())})
	b := top.browser()
	if res := top.login(t, b, "alice"); !res.OK {
		t.Fatalf("login:\n%s", describe(res))
	}
	// What the session holds, as the SP shows it to the user.
	code, raw := whoamiRaw(t, top, b, top.Replicas[0])
	var view struct {
		NameID     string `json:"name_id"`
		Attributes []struct {
			Name   string
			Values []string
		}
	}
	if err := json.Unmarshal(raw, &view); code != 200 || err != nil {
		t.Fatalf("whoami: %d %s %v", code, raw, err)
	}
	secrets := []string{view.NameID}
	for _, a := range view.Attributes {
		secrets = append(secrets, a.Values...)
	}
	if view.NameID != "alice@example.com" || len(secrets) < 4 {
		t.Fatalf("the session holds too little to search for (%v): the test would prove nothing", secrets)
	}
	leak := func(b []byte) string {
		for _, s := range secrets {
			if s != "" && bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(s))) {
				return s
			}
		}
		return ""
	}
	if leak(raw) == "" {
		t.Fatalf("the search does not find the identity in the session in clear: it would find it nowhere")
	}

	rc := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(cli, append([]string{"-u", srv.URL(), "--no-auth-warning"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("redis-cli %v: %v: %s", args, err, stderr.String())
		}
		return out
	}
	keys := strings.Fields(string(rc("--scan")))
	kinds := map[string]int{}
	for _, k := range keys {
		v := rc("--raw", "GET", k)
		kind, _, _ := strings.Cut(strings.TrimPrefix(k, "samlha:"), ":")
		kinds[kind]++
		if s := leak(append([]byte(k+"\n"), v...)); s != "" {
			t.Errorf("key %s (or its value) holds %q in clear:\n%q", k, s, v)
		}
	}
	// Not vacuous: the login's state is there to be read.
	for _, kind := range []string{"req", "sess", "replay"} {
		if kinds[kind] == 0 {
			t.Errorf("no %s: key in the dump (%v): the scan did not see the login", kind, keys)
		}
	}
}

func whoamiRaw(t *testing.T, top *topology, b *sptest.Browser, r *replica) (int, []byte) {
	t.Helper()
	root, _ := url.Parse(top.ProxyURL)
	req, _ := http.NewRequest("GET", r.URL+"/whoami", nil)
	for _, c := range b.Cookies(root) {
		req.AddCookie(c)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes()
}

// Two tabs of one browser start a login at the same moment: the proxy holds
// the first tab's request until the second's has arrived too, so both leave
// the browser with the same cookies (none), as when a user restores a
// session with two tabs. Both logins succeed, each on another replica.
func TestE2ETwoTabsLogInAtOnce(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	var arrivals atomic.Int64
	both := make(chan struct{})
	pick := func(n int64, r *http.Request) int {
		if r.URL.Path == "/app" {
			switch k := arrivals.Add(1); {
			case k == 2:
				close(both)
			case k < 2:
				select {
				case <-both:
				case <-time.After(20 * time.Second):
				}
			}
		}
		return int(n % 2)
	}
	top := startTopology(t, topologyConfig{Replicas: 2, Store: redisStores(srv.URL()), Pick: pick})
	b := top.browser()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	forms := make([]*sptest.PendingForm, 2)
	results := make([]*sptest.Result, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pf, res, err := b.LoginUntilACS(ctx, top.ProxyURL+"/app", "alice", "alice-password")
			if err != nil {
				results[i] = res
				return
			}
			forms[i] = pf
		}()
	}
	wg.Wait()
	for i := range 2 {
		if forms[i] == nil {
			t.Fatalf("tab %d did not reach the ACS:\n%s", i+1, describe(results[i]))
		}
	}
	select {
	case <-both:
	default:
		t.Fatal("the two tabs' first requests did not meet at the proxy: the test did not test the race")
	}
	for i, pf := range forms {
		if res := b.Submit(ctx, pf); !res.OK {
			t.Fatalf("tab %d:\n%s", i+1, describe(res))
		}
	}
}

// A binding cookie planted in the victim's browser (from a sibling
// subdomain, say) with a value this SP did not issue for the attacker's
// login does not let the attacker's response log the victim in; nor does
// the victim's own binding cookie of another login. The attacker's login is
// not burned by the attempts.
func TestE2EPlantedBindingRefused(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	top := startTopology(t, topologyConfig{Replicas: 2, Store: redisStores(srv.URL())})
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	root, _ := url.Parse(top.ProxyURL)

	attacker := top.browser()
	pf, res, err := attacker.LoginUntilACS(ctx, top.ProxyURL+"/app", "bob", "bob-password")
	if err != nil {
		t.Fatalf("%v\n%s", err, describe(res))
	}
	var name string
	for _, c := range attacker.Cookies(root) {
		if strings.HasPrefix(c.Name, "samlha_binding_") {
			name = c.Name
		}
	}
	if name == "" {
		t.Fatalf("the attacker's browser holds no binding cookie: %v", attacker.Cookies(root))
	}

	// A victim that has begun a login of its own: it sends its binding
	// cookie, which is not the attacker's login's.
	victim := top.browser()
	if _, res, err := victim.LoginUntilACS(ctx, top.ProxyURL+"/app", "alice", "alice-password"); err != nil {
		t.Fatalf("%v\n%s", err, describe(res))
	}
	if got := victim.Submit(ctx, pf); got.OK || got.Cause != string(failure.CauseBindingMismatch) {
		t.Fatalf("the attacker's response in the victim's browser: want %s:\n%s", failure.CauseBindingMismatch, describe(got))
	}
	// The attacker plants a cookie of the login's name with a value of its
	// choosing.
	if err := victim.SetCookie(root, &http.Cookie{Name: name, Value: relaystate.Token(25), Path: "/"}); err != nil {
		t.Fatal(err)
	}
	if got := victim.Submit(ctx, pf); got.OK || got.Cause != string(failure.CauseBindingMismatch) {
		t.Fatalf("planted binding value: want %s:\n%s", failure.CauseBindingMismatch, describe(got))
	}
	if code, body := whoamiRaw(t, top, victim, top.Replicas[0]); code == 200 {
		t.Fatalf("the victim has a session after the refusals: %s", body)
	}
	if got := attacker.Submit(ctx, pf); !got.OK {
		t.Fatalf("the attacker's own login was burned by the refused posts:\n%s", describe(got))
	}
}
