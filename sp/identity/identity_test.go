package identity

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crewjam/saml/samlsp"
	"github.com/google/go-cmp/cmp"
)

// AppendFields, which the gateway's fast hop writes into the request head,
// yields exactly the headers Set puts in a map: each once, a later one of
// a name replacing an earlier (a passed attribute under the user header's
// name), invalid values left out, several values joined.
func TestAppendFieldsIsSet(t *testing.T) {
	t.Parallel()
	h, err := NewHeaders(Config{PassAttributes: []PassAttribute{
		{Attribute: "mail", Header: "X-Email"},
		{Attribute: "groups", Header: "X-Groups"},
		{Attribute: "bad", Header: "X-Bad"},
		{Attribute: "uid", Header: "X-Samlha-User"},
		{Attribute: "absent", Header: "X-Absent"},
	}}, "http://sp", "http://app", slog.New(slog.DiscardHandler), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	id := Identity{NameID: "n-1", User: "alice", Attrs: samlsp.Attributes{
		"mail": {"alice@example.com"}, "groups": {"admins", "bad\nvalue", "staff"}, "bad": {"x\r\ny"}, "uid": {"alice-uid"},
	}}
	want := http.Header{}
	if err := h.Set(want, id); err != nil {
		t.Fatal(err)
	}
	fields, err := h.AppendFields([]Field{{"Kept", "1"}}, id)
	if err != nil {
		t.Fatal(err)
	}
	got := http.Header{}
	for _, f := range fields[1:] {
		if got[f.Name] != nil {
			t.Errorf("%s appended twice", f.Name)
		}
		got[f.Name] = []string{f.Value}
	}
	if diff := cmp.Diff(want, got); diff != "" || fields[0] != (Field{"Kept", "1"}) {
		t.Errorf("AppendFields against Set (-Set +AppendFields):\n%s (first field %v)", diff, fields[0])
	}
	if got.Get("X-Samlha-User") != "alice-uid" || got.Get("X-Groups") != "admins, staff" || got["X-Bad"] != nil ||
		strings.Contains(got.Get("X-Groups"), "\n") {
		t.Errorf("unexpected headers: %v", got)
	}
}
