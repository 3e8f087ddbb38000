package thirdparty

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/store/localproc"
)

// needTool skips outside CI and fails under CI=true when name is missing.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := FindTool(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: this must not be skipped)", err)
		}
		t.Skip(err)
	}
}

func TestPlace(t *testing.T) {
	t.Parallel()
	conf := "listen 127.0.0.1:8080; server 127.0.0.1:808; server 127.0.0.1:3000;"
	got, err := Place(conf, map[string]string{"127.0.0.1:8080": "127.0.0.1:20001", "127.0.0.1:808": "127.0.0.1:20002", "127.0.0.1:3000": "127.0.0.1:20003"})
	if want := "listen 127.0.0.1:20001; server 127.0.0.1:20002; server 127.0.0.1:20003;"; err != nil || got != want {
		t.Errorf("Place = %q, %v; want %q", got, err, want)
	}
	if _, err := Place(conf, map[string]string{"127.0.0.1:9999": "x"}); err == nil || !strings.Contains(err.Error(), "127.0.0.1:9999") {
		t.Errorf("a missing address: %v, want an error naming it", err)
	}
}

func TestFindToolNamesThePackage(t *testing.T) {
	t.Parallel()
	_, err := FindTool("samlha-no-such-tool")
	if !errors.Is(err, ErrToolMissing) || !strings.Contains(err.Error(), "apt-get install -y samlha-no-such-tool") {
		t.Errorf("FindTool of a missing tool: %v", err)
	}
}

// The premise of the spoof matrix: the PHP app reads X_Groups, x-groups
// and X-Groups as one variable, so a proxy that lets an underscore copy
// through lets it be read as the real header.
func TestPHPEchoMergesUnderscoreAndDash(t *testing.T) {
	needTool(t, "php")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app, err := StartPHPEcho(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer app.Stop()
	for _, name := range []string{"X-Groups", "x-groups", "X_Groups", "x_GROUPS"} {
		req, _ := http.NewRequest(http.MethodPost, app.URL+"/any/path", strings.NewReader("twelve bytes"))
		req.Header[name] = []string{"admins"}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var ev EchoVars
		err = json.NewDecoder(resp.Body).Decode(&ev)
		resp.Body.Close()
		if err != nil || ev.Method != http.MethodPost || ev.Vars["HTTP_X_GROUPS"] != "admins" || ev.BodyLength != 12 {
			t.Errorf("header %s: the app saw %+v (%v), want HTTP_X_GROUPS=admins and a 12-byte body", name, ev, err)
		}
	}

	// The gated stream: the first line at once, the rest after the gate.
	resp, err := http.Get(app.URL + "/s?gate=g1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("first\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first\n" {
		t.Fatalf("first line %q, %v", first, err)
	}
	if err := app.OpenGate("g1"); err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(resp.Body); string(rest) != "opened\n" {
		t.Errorf("after the gate: %q", rest)
	}
}

func TestHTTPBinRecordsFinishedRequests(t *testing.T) {
	t.Parallel()
	bin, err := StartHTTPBin()
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	resp, err := http.Get(bin.URL + "/anything/mark-1")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// The observer runs when the handler returns, which may be just after
	// the client has read the answer.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := localproc.Poll(ctx, func(context.Context) error {
		if len(bin.Finished("mark-1")) == 0 {
			return errors.New("go-httpbin has not recorded the request")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := bin.Finished("mark-1"); got[0].Status != http.StatusOK || got[0].Method != http.MethodGet {
		t.Errorf("recorded %+v", got[0])
	}
}
