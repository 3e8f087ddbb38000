package sp_test

import (
	"strings"
	"testing"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/limits"
)

// The one validator names LoginLimits.PerClientPending when it is negative
// (but -1, off) or over the ceiling, and only then.
func TestValidatePerClientPending(t *testing.T) {
	for _, tc := range []struct {
		share, ceiling int
		want           string // "": no problem
	}{
		{0, 20000, ""},
		{500, 20000, ""},
		{-1, 20000, ""},
		{-7, 20000, "must not be negative"},
		{20001, 20000, "over the pending-logins ceiling"},
		{50, -1, ""},
	} {
		msg := problemsOf(sp.Config{StoreKind: "memory", LoginLimits: limits.LoginLimits{PerClientPending: tc.share, MaxPending: tc.ceiling}},
			"LoginLimits.PerClientPending")
		if tc.want == "" && msg != "" || tc.want != "" && !strings.Contains(msg, tc.want) {
			t.Errorf("share %d of ceiling %d: %q, want %q", tc.share, tc.ceiling, msg, tc.want)
		}
	}
}
