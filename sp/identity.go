package sp

import (
	"net/http"
	"strings"
	"sync"

	"github.com/crewjam/saml/samlsp"
	"golang.org/x/net/http/httpguts"
)

// identity is what the upstream learns of a session.
type identity struct {
	NameID string
	User   string
	Attrs  samlsp.Attributes
}

func (s *SP) identityOf(sess samlsp.Session) identity {
	var id identity
	if n, ok := sess.(samlsp.SessionWithNameID); ok {
		id.NameID = n.GetNameID()
	}
	if a, ok := sess.(samlsp.SessionWithAttributes); ok {
		id.Attrs = a.GetAttributes()
	}
	id.User = userName(id.NameID, id.Attrs)
	return id
}

// setIdentity writes id's headers into h: the NameID, the user, each
// passed attribute and, if configured, the signed JWT. Values that are not
// valid header values are left out (and logged), never sent broken.
func (s *SP) setIdentity(h http.Header, id identity) error {
	g := s.cfg.Gateway
	set := func(name, v string) {
		if v == "" {
			return
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			s.log.Warn("identity value is not a valid header value; not sent", "header", name)
			return
		}
		h[name] = []string{v}
	}
	set(g.HeaderPrefix+identityNameID, id.NameID)
	set(g.HeaderPrefix+identityUser, id.User)
	for _, a := range g.PassAttributes {
		vals := id.Attrs[a.Attribute]
		ok := vals[:0:0]
		for _, v := range vals {
			if httpguts.ValidHeaderFieldValue(v) {
				ok = append(ok, v)
			} else {
				s.log.Warn("attribute value is not a valid header value; not sent", "attribute", a.Attribute, "header", a.Header)
			}
		}
		if len(ok) > 0 {
			h[a.Header] = []string{strings.Join(ok, ", ")}
		}
	}
	if s.jwt != nil {
		tok, err := s.jwt.token(id, s.passedAttributes(id), g.PassAttributes, s.now())
		if err != nil {
			return err
		}
		h[g.HeaderPrefix+identityJWT] = []string{tok}
	}
	return nil
}

// passedAttributes are the attributes the JWT carries: those named by
// PassAttributes, with all their values.
func (s *SP) passedAttributes(id identity) map[string][]string {
	g := s.cfg.Gateway
	if len(g.PassAttributes) == 0 {
		return nil
	}
	m := make(map[string][]string, len(g.PassAttributes))
	for _, a := range g.PassAttributes {
		if v := id.Attrs[a.Attribute]; len(v) > 0 {
			m[a.Attribute] = v
		}
	}
	return m
}

// bufferPool is httputil.BufferPool over sync.Pool: 32 KiB copy buffers,
// reused rather than allocated for every proxied body. It pools array
// pointers, so neither Get nor Put allocates.
type bufferPool struct{ p sync.Pool }

const proxyBufferSize = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([proxyBufferSize]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[proxyBufferSize]byte)[:] }

func (b *bufferPool) Put(x []byte) {
	if cap(x) >= proxyBufferSize {
		b.p.Put((*[proxyBufferSize]byte)(x[:proxyBufferSize]))
	}
}
