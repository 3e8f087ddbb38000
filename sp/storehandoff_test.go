package sp_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/samlha/samlha/sp"
	_ "github.com/samlha/samlha/store/memory"
	_ "github.com/samlha/samlha/store/redis"
)

// The validator names StoreHandoff for each way it can be wrong, and
// only then.
func TestValidateStoreHandoff(t *testing.T) {
	for _, tc := range []struct {
		kind, url, want string // want "": no StoreHandoff problem
	}{
		{"memory", "redis://127.0.0.1:6379/0", ""},
		{"memory", "redis-sentinel://127.0.0.1:26379/samlha", ""},
		{"memory", "", ""},
		{"redis", "redis://127.0.0.1:6379/0", "moves a memory or stateless replica to a shared store: the store is redis already"},
		{"", "redis://127.0.0.1:6379/0", ""},
		{"stateless", "redis://127.0.0.1:6379/0", ""},
		{"stateless", "memory://", "another process's memory"},
		{"memory", "memory://", "another process's memory"},
		{"memory", "mongo://:hunter2@db/0", `unknown scheme "mongo"`},
	} {
		msg := problemsOf(sp.Config{StoreKind: tc.kind, StoreHandoff: tc.url}, "StoreHandoff")
		switch {
		case tc.want == "" && msg != "":
			t.Errorf("%s with %q: %s; want no StoreHandoff problem", tc.kind, tc.url, msg)
		case tc.want != "" && !strings.Contains(msg, tc.want):
			t.Errorf("%s with %q: %q; want a StoreHandoff problem saying %q", tc.kind, tc.url, msg, tc.want)
		case strings.Contains(msg, "hunter2"):
			t.Errorf("the password is in the problem: %s", msg)
		}
	}
}

// AcceptStateless is for a replica on a shared store only, and an opened
// handoff store for a stateless replica with StoreHandoff only.
func TestValidateAcceptStateless(t *testing.T) {
	for _, tc := range []struct {
		kind, handoff string
		accept        bool
		field, want   string // want "": no problem of field
	}{
		{"redis", "", true, "AcceptStateless", ""},
		{"redis", "", false, "AcceptStateless", ""},
		{"stateless", "", true, "AcceptStateless", "a stateless replica accepts signed cookies anyway"},
		{"", "redis://127.0.0.1:6379/0", true, "AcceptStateless", "a stateless replica accepts signed cookies anyway"},
		{"memory", "", true, "AcceptStateless", "needs a shared store (redis)"},
		{"memory", "redis://127.0.0.1:6379/0", true, "AcceptStateless", "needs a shared store (redis)"},
	} {
		cfg := sp.Config{StoreKind: tc.kind, StoreHandoff: tc.handoff, AcceptStateless: tc.accept}
		msg := problemsOf(cfg, tc.field)
		switch {
		case tc.want == "" && msg != "":
			t.Errorf("%+v: %s; want no %s problem", tc, msg, tc.field)
		case tc.want != "" && !strings.Contains(msg, tc.want):
			t.Errorf("%+v: %q; want a %s problem saying %q", tc, msg, tc.field, tc.want)
		}
	}
}

// problemsOf is what the validator says of cfg's field, its problems
// joined by "; " ("" for none).
func problemsOf(cfg sp.Config, field string) string {
	var got []string
	var ps sp.Problems
	if err := cfg.Validate(); errors.As(err, &ps) {
		for _, p := range ps {
			if p.Field == field {
				got = append(got, p.Msg)
			}
		}
	}
	return strings.Join(got, "; ")
}
