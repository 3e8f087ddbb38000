package access

import (
	"fmt"
	"path"
	"strings"
)

// PublicPaths need no session: prefixes ("/static/", "/health"), or
// path.Match patterns when they contain * ? or [. They are matched exactly
// (with regard to case) on the decoded canonical path.
type PublicPaths []string

// Match reports whether p (decoded and canonical) needs no session.
func (pp PublicPaths) Match(p string) bool {
	for _, pub := range pp {
		if strings.ContainsAny(pub, "*?[") {
			if ok, _ := path.Match(pub, p); ok {
				return true
			}
			continue
		}
		if Under(p, pub) {
			return true
		}
	}
	return false
}

// CheckPublicPath reports what is wrong with a public path, or nil.
func CheckPublicPath(pub string) error {
	if !strings.HasPrefix(pub, "/") {
		return fmt.Errorf("public path %q must begin with /", pub)
	}
	if _, err := path.Match(pub, "/"); err != nil {
		return fmt.Errorf("public path %q: %v", pub, err)
	}
	if !strings.ContainsAny(pub, "*?[") {
		if _, err := Canonical(pub); err != nil {
			return fmt.Errorf("public path %q: %v", pub, err)
		}
	}
	return nil
}
