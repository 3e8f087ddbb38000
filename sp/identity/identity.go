// Package identity is what an application behind the SP learns of a user,
// and the rule that only the SP may say it: the identity of a session, the
// headers that carry it (<prefix>Name-Id, <prefix>User, each --pass-attribute
// header and, optionally, a signed JWT, jwt.go), and the protected-header
// rule that removes or refuses every client copy of them under any spelling
// (protect.go).
package identity

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/crewjam/saml/samlsp"
	"golang.org/x/net/http/httpguts"
)

// DefaultHeaderPrefix is the prefix of the identity headers the SP sends
// (and strips from every client request).
const DefaultHeaderPrefix = "X-Samlha-"

// Identity header names, after the prefix.
const (
	suffixNameID = "Name-Id"       // the NameID
	suffixUser   = "User"          // uid attribute, or the NameID
	suffixJWT    = "Jwt-Assertion" // the signed identity (Config.JWT)
)

// Identity is what the upstream learns of a session.
type Identity struct {
	NameID string
	User   string
	Attrs  samlsp.Attributes
}

// Of is the identity of sess.
func Of(sess samlsp.Session) Identity {
	var id Identity
	if n, ok := sess.(samlsp.SessionWithNameID); ok {
		id.NameID = n.GetNameID()
	}
	if a, ok := sess.(samlsp.SessionWithAttributes); ok {
		id.Attrs = a.GetAttributes()
	}
	id.User = UserName(id.NameID, id.Attrs)
	return id
}

// UserName is the user's short name: the uid attribute the IdP sends, or
// the NameID.
func UserName(nameID string, attrs samlsp.Attributes) string {
	for _, k := range []string{"uid", "urn:oid:0.9.2342.19200300.100.1.1", "eduPersonPrincipalName"} {
		if v := attrs.Get(k); v != "" {
			return v
		}
	}
	return nameID
}

// PassAttribute sends a session attribute to the upstream as a header.
// Several values are joined with ", " (RFC 9110 list syntax); a value that
// is not a valid header field value (control characters) is dropped and
// logged. Values that themselves contain commas are ambiguous in the
// header: read them from the identity JWT, which carries them as an array.
type PassAttribute struct {
	Attribute string // attribute name as the session has it (FriendlyName or Name)
	Header    string // header name, e.g. X-Email
}

// ParsePassAttribute parses "attribute=Header-Name".
func ParsePassAttribute(s string) (PassAttribute, error) {
	a, h, ok := strings.Cut(s, "=")
	if !ok || a == "" || h == "" {
		return PassAttribute{}, fmt.Errorf("%q: want attribute=Header-Name", s)
	}
	if !httpguts.ValidHeaderFieldName(h) {
		return PassAttribute{}, fmt.Errorf("%q: %q is not a valid header name", s, h)
	}
	return PassAttribute{Attribute: a, Header: http.CanonicalHeaderKey(h)}, nil
}

// Config says which identity headers the SP sends.
type Config struct {
	// HeaderPrefix prefixes the identity headers; default
	// DefaultHeaderPrefix.
	HeaderPrefix string
	// PassAttributes are the session attributes sent as headers.
	PassAttributes []PassAttribute
	// JWT, when set, signs a short-lived identity JWT sent in
	// <prefix>Jwt-Assertion.
	JWT *JWT
}

// CheckPrefix reports what is wrong with an identity header prefix ("" is
// the default).
func CheckPrefix(p string) error {
	if p == "" {
		return nil
	}
	if !strings.HasSuffix(p, "-") || len(p) < 3 || !httpguts.ValidHeaderFieldName(p) {
		return fmt.Errorf("identity header prefix %q must be a header name ending in '-', like X-Samlha-", p)
	}
	return nil
}

// CheckPassAttribute reports what is wrong with a passed attribute's
// header: not a header name, or one the request needs.
func CheckPassAttribute(a PassAttribute) error {
	if !httpguts.ValidHeaderFieldName(a.Header) {
		return fmt.Errorf("pass-attribute header %q is not a valid header name", a.Header)
	}
	switch normalise(a.Header) {
	case "host", "cookie", "authorization", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
		"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "forwarded":
		return fmt.Errorf("pass-attribute header %q would replace a header the request needs", a.Header)
	}
	return nil
}

func (c Config) prefix() string {
	if c.HeaderPrefix == "" {
		return DefaultHeaderPrefix
	}
	return http.CanonicalHeaderKey(c.HeaderPrefix)
}

// Headers writes identities as headers for one SP.
type Headers struct {
	prefix string
	// The prefixed names, made once: nameID, user, jwt.
	nameID, user, jwt string
	pass              []PassAttribute
	signer            *jwtSigner // nil without Config.JWT
	log               *slog.Logger
	now               func() time.Time
	prot              Protected
}

// NewHeaders returns the headers c configures; the JWT (if any) is issued
// by issuer for audience (its own Audience, if set, wins).
func NewHeaders(c Config, issuer, audience string, log *slog.Logger, now func() time.Time) (*Headers, error) {
	h := &Headers{prefix: c.prefix(), pass: c.PassAttributes, log: log, now: now}
	h.nameID, h.user, h.jwt = h.prefix+suffixNameID, h.prefix+suffixUser, h.prefix+suffixJWT
	names := make([]string, 0, len(c.PassAttributes))
	for _, a := range c.PassAttributes {
		names = append(names, a.Header)
	}
	h.prot = NewProtected([]string{h.prefix}, names)
	if c.JWT != nil {
		var err error
		if h.signer, err = newJWTSigner(c.JWT, issuer, audience); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Protected is the set of header names only the SP may send.
func (h *Headers) Protected() Protected { return h.prot }

// JWKS is the JSON of /saml/jwks.json, or nil without an identity JWT.
func (h *Headers) JWKS() []byte {
	if h.signer == nil {
		return nil
	}
	return h.signer.jwks
}

// Set writes id's headers into hdr: the NameID, the user, each passed
// attribute and, if configured, the signed JWT. Values that are not valid
// header values are left out (and logged), never sent broken.
func (h *Headers) Set(hdr http.Header, id Identity) error {
	var buf [8]Field
	fs, err := h.AppendFields(buf[:0], id)
	for _, f := range fs {
		hdr[f.Name] = []string{f.Value}
	}
	return err
}

// Field is one identity header.
type Field struct{ Name, Value string }

// AppendFields appends to dst the headers Set writes, in its order, for a
// caller that writes them other than into an http.Header (the gateway's
// fast hop, straight into the request head). On an error (the JWT could
// not be signed) the fields before it are returned with it.
func (h *Headers) AppendFields(dst []Field, id Identity) ([]Field, error) {
	start := len(dst)
	// put sets a header as Set's map would: a later one of the same name
	// (a passed attribute configured under the user header's name)
	// replaces the earlier.
	put := func(name, v string) {
		for i := start; i < len(dst); i++ {
			if dst[i].Name == name {
				dst[i].Value = v
				return
			}
		}
		dst = append(dst, Field{name, v})
	}
	add := func(name, v string) {
		if v == "" {
			return
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			h.log.Warn("identity value is not a valid header value; not sent", "header", name)
			return
		}
		put(name, v)
	}
	add(h.nameID, id.NameID)
	add(h.user, id.User)
	for _, a := range h.pass {
		vals := id.Attrs[a.Attribute]
		if len(vals) == 1 && httpguts.ValidHeaderFieldValue(vals[0]) {
			put(a.Header, vals[0]) // the common case, without a copy
			continue
		}
		ok := vals[:0:0]
		for _, v := range vals {
			if httpguts.ValidHeaderFieldValue(v) {
				ok = append(ok, v)
			} else {
				h.log.Warn("attribute value is not a valid header value; not sent", "attribute", a.Attribute, "header", a.Header)
			}
		}
		if len(ok) > 0 {
			put(a.Header, strings.Join(ok, ", "))
		}
	}
	if h.signer != nil {
		tok, err := h.signer.token(id, h.passed(id), h.pass, h.now())
		if err != nil {
			return dst, err
		}
		put(h.jwt, tok)
	}
	return dst, nil
}

// passed are the attributes the JWT carries: those named by PassAttributes,
// with all their values.
func (h *Headers) passed(id Identity) map[string][]string {
	if len(h.pass) == 0 {
		return nil
	}
	m := make(map[string][]string, len(h.pass))
	for _, a := range h.pass {
		if v := id.Attrs[a.Attribute]; len(v) > 0 {
			m[a.Attribute] = v
		}
	}
	return m
}
