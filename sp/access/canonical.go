// Package access decides who may reach which path in gateway and
// forward-auth mode: the one canonical form a path must have before any
// rule is applied to it (this file), the paths that need no session
// (public.go), and the --allow rules (rules.go).
//
// # Canonical paths
//
// The gateway decides on a path, and the application acts on one; the two
// must be the same path. Servers and frameworks read some spellings of a
// path differently (Tomcat and Spring drop ";" parameters, IIS strips
// trailing dots and spaces and reads "\" as "/", some servers decode
// escapes twice or before they split the path, and many route without
// regard to case). So the gateway accepts a path only in one plain form and
// refuses the rest with path-not-canonical (400), rather than guess how the
// application reads it:
//
//   - it begins with "/", and its bytes are printable ASCII (escape
//     everything else);
//   - no empty segment ("//"; a trailing "/" is fine), no "." or ".."
//     segment;
//   - no ";", no "\", anywhere;
//   - no escaped "/", "\", ".", ";", "%" or control character (%2F, %5C,
//     %2E, %3B, %25, %00-%1F, %7F), and no malformed escape;
//   - decoded, it is valid UTF-8 (overlong forms such as %C0%AE are
//     refused), and no segment ends in "." or " ".
//
// Rules are then matched on the decoded path: --allow prefixes without
// regard to case (so /ADMIN is judged as /admin: the rule errs towards
// refusing), --public-path exactly (so only the exact spelling is public:
// it errs towards asking for a session).
package access

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// ErrNotCanonical is wrapped by every refusal of Canonical.
var ErrNotCanonical = errors.New("path is not in canonical form")

// Canonical checks the request path as sent (escaped: url.URL's
// EscapedPath, or the path of a front proxy's X-Forwarded-Uri) and returns
// it decoded, or an error wrapping ErrNotCanonical that says why.
func Canonical(escaped string) (string, error) {
	fail := func(why string) (string, error) {
		return "", fmt.Errorf("%w: %s", ErrNotCanonical, why)
	}
	if escaped == "" || escaped[0] != '/' {
		return fail("it does not begin with /")
	}
	for i := 0; i < len(escaped); i++ {
		switch c := escaped[i]; {
		case c < 0x21 || c > 0x7e:
			return fail(fmt.Sprintf("byte %#x at %d is not printable ASCII", c, i))
		case c == ';' || c == '\\':
			return fail(fmt.Sprintf("%q at %d (path parameters and backslashes are read differently by different servers)", c, i))
		case c == '%':
			if i+2 >= len(escaped) || !isHex(escaped[i+1]) || !isHex(escaped[i+2]) {
				return fail(fmt.Sprintf("malformed escape at %d", i))
			}
			if b := unhex(escaped[i+1])<<4 | unhex(escaped[i+2]); b < 0x20 || b == 0x7f || strings.IndexByte(`/\.;%`, b) >= 0 {
				return fail(fmt.Sprintf("escaped %q at %d", b, i))
			}
		}
	}
	decoded, err := url.PathUnescape(escaped)
	if err != nil {
		return fail(err.Error())
	}
	if !utf8.ValidString(decoded) {
		return fail("decoded, it is not valid UTF-8")
	}
	segs := strings.Split(decoded[1:], "/")
	for i, s := range segs {
		last := i == len(segs)-1
		switch {
		case s == "" && !last:
			return fail("empty segment")
		case s == "." || s == "..":
			return fail("dot segment")
		case strings.HasSuffix(s, ".") || strings.HasSuffix(s, " "):
			return fail("a segment ends in a dot or a space (some servers strip them)")
		}
	}
	return decoded, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// Under reports whether p is prefix or below it: "/a" is under "/a" and
// "/a/", "/ab" is not under "/a"; every path is under "/".
func Under(p, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(p, prefix) || p+"/" == prefix
	}
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// underFold is Under without regard to case.
func underFold(p, prefix string) bool {
	return Under(strings.ToLower(p), strings.ToLower(prefix))
}
