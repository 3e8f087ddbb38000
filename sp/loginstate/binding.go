package loginstate

import (
	"cmp"
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/samlha/samlha/sp/keyring"
)

// Browser binding (store mode): each login gets its own cookie, named after
// its RelayState's nonce, whose value only this SP can make:
//
//	name:  samlha_binding_<RelayState nonce>   (__Host-samlha_binding_... on https without a cookie domain)
//	value: base64url(key ID | issued, unix seconds (8) | HMAC-SHA256(binding key, "v1" | RelayState | issued)[:16])
//
// The ACS accepts a response only with the cookie of its own login, and
// only with a value that verifies under a key of the SP's ring. So:
//
//   - two tabs that log in at the same time each have their own cookie;
//     neither overwrites the other's (one cookie per browser did);
//   - a value the browser presents that this SP (any replica with the same
//     ring) never issued, or issued for another login, is refused as
//     binding-mismatch, so a value planted from a sibling subdomain must at
//     least be a real one, for that very login;
//   - on https without a cookie domain the __Host- prefix stops a sibling
//     subdomain (or a plain-http page) from setting the cookie at all, which
//     is what stops an attacker planting the real cookie of a login they
//     began themselves.
//
// The store keeps a hash of the value with the tracked request as well, so
// the cookie must be the one that login was begun with.
const (
	bindingCookieBase   = "samlha_binding_"
	hostPrefix          = "__Host-"
	bindingMACLen       = 16
	bindingRawLen       = 1 + 8 + bindingMACLen
	bindingValueLen     = (bindingRawLen*8 + 5) / 6
	labelBindingMessage = "v1\x00"
	// maxBindingCookies bounds the binding cookies one browser holds: at
	// most this many logins pending at once (abandoned ones included);
	// beginning one more expires the oldest, whose login then fails as
	// binding-mismatch (the browser sends the others; the detail says
	// this may be why). A cookie also expires with its login.
	maxBindingCookies = 8
)

// bindingPrefix is the name of every binding cookie, before the nonce.
func (c CookieSettings) bindingPrefix() string {
	if c.Secure && c.Domain == "" {
		return hostPrefix + bindingCookieBase
	}
	return bindingCookieBase
}

// bindingName is the name of the binding cookie of the login whose
// RelayState is rs.
func (c CookieSettings) bindingName(rs string) string {
	_, nonce, _ := strings.Cut(rs, "~")
	return c.bindingPrefix() + nonce
}

func bindingMAC(key []byte, rs string, issued []byte) []byte {
	h := keyring.MAC(key)
	h.Write([]byte(labelBindingMessage))
	h.Write([]byte(rs))
	h.Write(issued)
	return h.Sum(nil)[:bindingMACLen]
}

// issueBinding returns a new binding value for the login rs, signed with the
// sealing key.
func issueBinding(r *keyring.Ring, rs string, now time.Time) string {
	k := r.Sealing()
	raw := make([]byte, 0, bindingRawLen)
	raw = append(raw, k.ID)
	raw = binary.BigEndian.AppendUint64(raw, uint64(now.Unix()))
	raw = append(raw, bindingMAC(k.Binding, rs, raw[1:9])...)
	return base64.RawURLEncoding.EncodeToString(raw)
}

var (
	errBindingMalformed = errors.New("binding cookie value is not of the form this SP issues")
	errBindingForged    = errors.New("binding cookie value was not issued by this SP for this login")
)

// verifyBinding checks that value was issued, by a replica with a key of
// this ring, for the login rs.
func verifyBinding(r *keyring.Ring, rs, value string) error {
	if len(value) != bindingValueLen {
		return errBindingMalformed
	}
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) != bindingRawLen {
		return errBindingMalformed
	}
	for _, k := range r.ByID(raw[0]) {
		if hmac.Equal(raw[9:], bindingMAC(k.Binding, rs, raw[1:9])) {
			return nil
		}
	}
	return errBindingForged
}

// bindingIssued is the issue time a binding value claims (unverified), or
// zero if it has none.
func bindingIssued(value string) int64 {
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) != bindingRawLen {
		return 0
	}
	return int64(binary.BigEndian.Uint64(raw[1:9]))
}

// bindingCookies returns the binding cookies r carries.
func (c CookieSettings) bindingCookies(r *http.Request) []*http.Cookie {
	var out []*http.Cookie
	prefix := c.bindingPrefix()
	for _, ck := range r.Cookies() {
		if strings.HasPrefix(ck.Name, prefix) {
			out = append(out, ck)
		}
	}
	return out
}

func (c CookieSettings) bindingCookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		Domain:   c.Domain,
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   c.Secure,
		SameSite: c.SameSite,
	}
}

// setBinding sets the binding cookie of the new login rs on w, lasting
// maxAge, and expires the oldest of the browser's other binding cookies
// beyond maxBindingCookies-1. It returns the value.
func (c CookieSettings) setBinding(w http.ResponseWriter, r *http.Request, rs string, now time.Time, maxAge time.Duration) string {
	if old := c.bindingCookies(r); len(old) >= maxBindingCookies {
		slices.SortFunc(old, func(a, b *http.Cookie) int {
			return cmp.Compare(bindingIssued(a.Value), bindingIssued(b.Value))
		})
		for _, ck := range old[:len(old)-(maxBindingCookies-1)] {
			http.SetCookie(w, c.bindingCookie(ck.Name, "", -1))
		}
	}
	v := issueBinding(c.Ring, rs, now)
	http.SetCookie(w, c.bindingCookie(c.bindingName(rs), v, int(maxAge/time.Second)+1))
	return v
}

// clearBinding expires the binding cookie of login rs: its login is over.
func (c CookieSettings) clearBinding(w http.ResponseWriter, rs string) {
	http.SetCookie(w, c.bindingCookie(c.bindingName(rs), "", -1))
}

// IsBindingCookie reports whether name is a login's binding cookie, with
// or without the __Host- prefix.
func IsBindingCookie(name string) bool {
	return strings.HasPrefix(strings.TrimPrefix(name, hostPrefix), bindingCookieBase)
}
