package loginstate

import (
	"cmp"
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
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
//	value: base64url(key ID | issued, unix seconds (8) | request ID (20) | HMAC-SHA256(binding key, "v2" | RelayState | issued | request ID)[:16])
//	       (version 1, from earlier releases: without the request ID, and "v1" in the MAC)
//
// The request ID (the 20 random bytes of crewjam's "id-" + 40 hex digits)
// lets the ACS check the response against its AuthnRequest before it reads
// the store, and then consume the login, record the assertion and store the
// session in one round trip (StoreTracker.Commit).
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
	requestIDRawLen     = 20
	bindingRawLenV2     = 1 + 8 + requestIDRawLen + bindingMACLen
	bindingValueLenV2   = (bindingRawLenV2*8 + 5) / 6
	labelBindingV2      = "v2\x00"
	requestIDPrefix     = "id-"
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

func bindingMAC(key []byte, label, rs string, signed []byte) []byte {
	h := keyring.MAC(key)
	h.Write([]byte(label))
	h.Write([]byte(rs))
	h.Write(signed)
	return h.Sum(nil)[:bindingMACLen]
}

// issueBinding returns a new binding value for the login rs with
// AuthnRequest requestID, signed with the sealing key: version 2 when the
// ID is of crewjam's form, else version 1 (the ACS then reads the store
// first).
func issueBinding(r *keyring.Ring, rs, requestID string, now time.Time) string {
	k := r.Sealing()
	raw := make([]byte, 0, bindingRawLenV2)
	raw = append(raw, k.ID)
	raw = binary.BigEndian.AppendUint64(raw, uint64(now.Unix()))
	if id, ok := rawRequestID(requestID); ok {
		raw = append(raw, id...)
		raw = append(raw, bindingMAC(k.Binding, labelBindingV2, rs, raw[1:])...)
		return base64.RawURLEncoding.EncodeToString(raw)
	}
	raw = append(raw, bindingMAC(k.Binding, labelBindingMessage, rs, raw[1:9])...)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// rawRequestID is the 20 bytes of a request ID of crewjam's form.
func rawRequestID(id string) ([]byte, bool) {
	h, ok := strings.CutPrefix(id, requestIDPrefix)
	if !ok || len(h) != 2*requestIDRawLen {
		return nil, false
	}
	b, err := hex.DecodeString(h)
	if err != nil || hex.EncodeToString(b) != h {
		return nil, false
	}
	return b, true
}

var (
	errBindingMalformed = errors.New("binding cookie value is not of the form this SP issues")
	errBindingForged    = errors.New("binding cookie value was not issued by this SP for this login")
)

// verifyBinding checks that value was issued, by a replica with a key of
// this ring, for the login rs.
func verifyBinding(r *keyring.Ring, rs, value string) error {
	_, err := openBinding(r, rs, value)
	return err
}

// binding is what a verified binding value says.
type binding struct {
	issued    time.Time
	requestID string // "" in a version 1 value
}

// openBinding verifies value as verifyBinding does and returns what it says.
func openBinding(r *keyring.Ring, rs, value string) (binding, error) {
	if len(value) != bindingValueLen && len(value) != bindingValueLenV2 {
		return binding{}, errBindingMalformed
	}
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || (len(raw) != bindingRawLen && len(raw) != bindingRawLenV2) {
		return binding{}, errBindingMalformed
	}
	label, signed, mac := labelBindingMessage, raw[1:9], raw[9:]
	if len(raw) == bindingRawLenV2 {
		label, signed, mac = labelBindingV2, raw[1:9+requestIDRawLen], raw[9+requestIDRawLen:]
	}
	for _, k := range r.ByID(raw[0]) {
		if hmac.Equal(mac, bindingMAC(k.Binding, label, rs, signed)) {
			b := binding{issued: time.Unix(int64(binary.BigEndian.Uint64(raw[1:9])), 0)}
			if len(raw) == bindingRawLenV2 {
				b.requestID = requestIDPrefix + hex.EncodeToString(raw[9:9+requestIDRawLen])
			}
			return b, nil
		}
	}
	return binding{}, errBindingForged
}

// bindingIssued is the issue time a binding value claims (unverified), or
// zero if it has none.
func bindingIssued(value string) int64 {
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || (len(raw) != bindingRawLen && len(raw) != bindingRawLenV2) {
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
func (c CookieSettings) setBinding(w http.ResponseWriter, r *http.Request, rs, requestID string, now time.Time, maxAge time.Duration) string {
	if old := c.bindingCookies(r); len(old) >= maxBindingCookies {
		slices.SortFunc(old, func(a, b *http.Cookie) int {
			return cmp.Compare(bindingIssued(a.Value), bindingIssued(b.Value))
		})
		for _, ck := range old[:len(old)-(maxBindingCookies-1)] {
			http.SetCookie(w, c.bindingCookie(ck.Name, "", -1))
		}
	}
	v := issueBinding(c.Ring, rs, requestID, now)
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
