package access

import (
	"fmt"
	"slices"
	"strings"

	"github.com/samlha/samlha/sp/failure"
)

// Rule admits users whose Attribute has Value, on paths under PathPrefix
// ("/" when not given), matched without regard to case. For a path, the
// rules of the longest prefix that covers it apply, and any one of them
// admits (any-of); a path no rule's prefix covers needs only a session.
type Rule struct {
	PathPrefix string
	Attribute  string
	Value      string
}

// ParseRule parses "attribute=value" or "/prefix:attribute=value"; the
// prefix must be canonical.
func ParseRule(s string) (Rule, error) {
	r := Rule{PathPrefix: "/"}
	rest := s
	if strings.HasPrefix(s, "/") {
		p, after, ok := strings.Cut(s, ":")
		if !ok {
			return Rule{}, fmt.Errorf("%q: want /prefix:attribute=value", s)
		}
		if _, err := Canonical(p); err != nil {
			return Rule{}, fmt.Errorf("%q: prefix %q: %v", s, p, err)
		}
		r.PathPrefix, rest = p, after
	}
	a, v, ok := strings.Cut(rest, "=")
	if !ok || a == "" || v == "" {
		return Rule{}, fmt.Errorf("%q: want [/prefix:]attribute=value", s)
	}
	r.Attribute, r.Value = a, v
	return r, nil
}

func (r Rule) String() string {
	return r.PathPrefix + ":" + r.Attribute + "=" + r.Value
}

// Rules are the --allow rules.
type Rules []Rule

// Decide returns a forbidden failure if a user (named user, for the log)
// with attrs may not reach path (decoded and canonical, see Canonical);
// nil if they may.
func (rs Rules) Decide(path, user string, attrs map[string][]string) *failure.Failure {
	best := ""
	found := false
	for _, r := range rs {
		if underFold(path, r.PathPrefix) && (!found || len(r.PathPrefix) > len(best)) {
			best, found = r.PathPrefix, true
		}
	}
	if !found {
		return nil
	}
	var want []string
	for _, r := range rs {
		if !strings.EqualFold(r.PathPrefix, best) {
			continue
		}
		if slices.Contains(attrs[r.Attribute], r.Value) {
			return nil
		}
		want = append(want, r.Attribute+"="+r.Value)
	}
	return &failure.Failure{Cause: failure.CauseForbidden,
		Detail: fmt.Sprintf("user %q may not reach %s: rules for %s want any of %s", user, path, best, strings.Join(want, ", "))}
}

// PathMatters reports whether some rule is for a path prefix other than
// "/", so that the path must be known to decide.
func (rs Rules) PathMatters() bool {
	for _, r := range rs {
		if r.PathPrefix != "/" {
			return true
		}
	}
	return false
}
