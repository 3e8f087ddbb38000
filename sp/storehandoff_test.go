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
		{"redis", "redis://127.0.0.1:6379/0", "needs a memory store (the store is redis)"},
		{"", "redis://127.0.0.1:6379/0", "needs a memory store (the store is stateless)"},
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
