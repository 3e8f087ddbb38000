package sp

import (
	"fmt"
	"slices"
	"strings"

	"github.com/samlha/samlha/sp/failure"
)

// AllowRule admits users whose Attribute has Value, on paths under
// PathPrefix ("/" when not given). For a path, the rules of the longest
// prefix that covers it apply, and any one of them admits (any-of); a path
// no rule's prefix covers needs only a session.
type AllowRule struct {
	PathPrefix string
	Attribute  string
	Value      string
}

// ParseAllowRule parses "attribute=value" or "/prefix:attribute=value".
func ParseAllowRule(s string) (AllowRule, error) {
	r := AllowRule{PathPrefix: "/"}
	rest := s
	if strings.HasPrefix(s, "/") {
		p, after, ok := strings.Cut(s, ":")
		if !ok {
			return AllowRule{}, fmt.Errorf("%q: want /prefix:attribute=value", s)
		}
		if !cleanPath(p) {
			return AllowRule{}, fmt.Errorf("%q: prefix %q is not a clean path", s, p)
		}
		r.PathPrefix, rest = p, after
	}
	a, v, ok := strings.Cut(rest, "=")
	if !ok || a == "" || v == "" {
		return AllowRule{}, fmt.Errorf("%q: want [/prefix:]attribute=value", s)
	}
	r.Attribute, r.Value = a, v
	return r, nil
}

func (r AllowRule) String() string {
	return r.PathPrefix + ":" + r.Attribute + "=" + r.Value
}

// authorize returns a forbidden failure.Failure if id may not reach path.
func (s *SP) authorize(id identity, path string) *failure.Failure {
	rules := s.cfg.Gateway.Allow
	best := ""
	found := false
	for _, r := range rules {
		if pathUnder(path, r.PathPrefix) && (!found || len(r.PathPrefix) > len(best)) {
			best, found = r.PathPrefix, true
		}
	}
	if !found {
		return nil
	}
	var want []string
	for _, r := range rules {
		if r.PathPrefix != best {
			continue
		}
		if slices.Contains(id.Attrs[r.Attribute], r.Value) {
			return nil
		}
		want = append(want, r.Attribute+"="+r.Value)
	}
	return &failure.Failure{Cause: failure.CauseForbidden, Origin: "",
		Detail: fmt.Sprintf("user %q may not reach %s: rules for %s want any of %s", id.User, path, best, strings.Join(want, ", "))}
}

// hasPathRules reports whether some --allow rule is for a path prefix other
// than "/", so that the path matters.
func (s *SP) hasPathRules() bool {
	for _, r := range s.cfg.Gateway.Allow {
		if r.PathPrefix != "/" {
			return true
		}
	}
	return false
}
