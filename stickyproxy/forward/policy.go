package forward

import (
	"net/http"
	"net/netip"
	"net/url"

	"golang.org/x/net/http/httpguts"
)

// Policy is what a proxy tells the next hop about the request it
// forwards: X-Forwarded-For, -Host, -Proto, X-Real-IP and Forwarded.
//
// From a peer that is not trusted, the client's own copies of all five are
// dropped and replaced by what the proxy knows: the peer's address, the
// request's Host, whether the connection was TLS. From a trusted peer,
// X-Forwarded-For is appended to, X-Forwarded-Host and -Proto are kept when
// they are well formed (-Proto only as http or https), and Forwarded is
// passed on. PublicURL, when set, is what X-Forwarded-Host and -Proto say
// whatever the peer: a gateway that knows its public address does not let
// a client choose what the application believes its host is. X-Real-IP is
// always the resolved client (Trusted.ClientAddr), never a client's copy.
type Policy struct {
	Trusted Trusted
	// PublicURL, if set, fixes X-Forwarded-Host (its host) and
	// X-Forwarded-Proto (its scheme).
	PublicURL *url.URL
	// Forwarded also sends an RFC 7239 Forwarded element for this hop
	// (for, host, proto), after a trusted peer's elements. Off: a trusted
	// peer's Forwarded is passed on as it is, and nothing is added.
	Forwarded bool
}

// ownedNorm are the request headers a Policy writes, normalised
// (Normalize): a client's copies never pass, under any spelling.
var ownedNorm = [...]string{"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "forwarded"}

// Owns reports whether name is one of the headers the policy writes,
// compared normalised (any case, '_' as '-': CGI, WSGI, Rack and PHP read
// X_Real_IP as X-Real-IP), so that a proxy copying the other request
// headers itself (the fast engine) skips every client copy. It does not
// allocate.
func (p *Policy) Owns(name string) bool {
	if len(name) < 9 {
		return false
	}
	for _, o := range ownedNorm {
		if len(o) == len(name) && hasNormPrefix(name, o) {
			return true
		}
	}
	return false
}

// values is what the policy decided for one request.
type values struct {
	peer      netip.Addr // invalid: RemoteAddr is not an address
	client    netip.Addr
	xffPrior  []string // a trusted peer's X-Forwarded-For lines
	fwdPrior  []string // a trusted peer's Forwarded lines
	host      string
	proto     string
	forwarded bool
}

func (p *Policy) decide(in *http.Request) values {
	v := values{host: in.Host, proto: "http", forwarded: p.Forwarded}
	if in.TLS != nil {
		v.proto = "https"
	}
	peer, ok := PeerAddr(in.RemoteAddr)
	if ok {
		v.peer, v.client = peer, peer
	}
	if ok && p.Trusted.Contains(peer) {
		h := in.Header
		v.xffPrior = h["X-Forwarded-For"]
		v.fwdPrior = h["Forwarded"]
		v.client = p.Trusted.walkXFF(v.xffPrior, peer)
		if xfh := h["X-Forwarded-Host"]; len(xfh) > 0 && xfh[0] != "" && httpguts.ValidHostHeader(xfh[0]) {
			v.host = xfh[0]
		}
		if xfp := h["X-Forwarded-Proto"]; len(xfp) > 0 && (xfp[0] == "http" || xfp[0] == "https") {
			v.proto = xfp[0]
		}
	}
	if p.PublicURL != nil {
		v.host, v.proto = p.PublicURL.Host, p.PublicURL.Scheme
	}
	return v
}

// Set writes the policy's headers for the request in into out (the
// outbound request's header), replacing whatever out held under those
// names: for httputil.ReverseProxy's Rewrite.
func (p *Policy) Set(out http.Header, in *http.Request) {
	v := p.decide(in)
	for k := range out {
		if p.Owns(k) {
			delete(out, k)
		}
	}
	if v.peer.IsValid() {
		var b []byte
		for _, x := range v.xffPrior {
			b = append(append(b, x...), ", "...)
		}
		out["X-Forwarded-For"] = []string{string(v.peer.AppendTo(b))}
	}
	out["X-Forwarded-Host"] = []string{v.host}
	out["X-Forwarded-Proto"] = []string{v.proto}
	if v.client.IsValid() {
		out["X-Real-Ip"] = []string{v.client.String()}
	}
	if len(v.fwdPrior) > 0 {
		out["Forwarded"] = append([]string(nil), v.fwdPrior...)
	}
	if v.forwarded {
		out["Forwarded"] = append(out["Forwarded"], string(v.appendForwarded(nil)))
	}
}

// Append appends the policy's headers for in to b, in HTTP/1.1 wire form
// ("Name: value\r\n" each), for a proxy that writes the request itself.
// With a b of enough capacity it does not allocate.
func (p *Policy) Append(b []byte, in *http.Request) []byte {
	v := p.decide(in)
	if v.peer.IsValid() {
		b = append(b, "X-Forwarded-For: "...)
		for _, x := range v.xffPrior {
			b = append(append(b, x...), ", "...)
		}
		b = append(v.peer.AppendTo(b), "\r\n"...)
	}
	b = append(append(append(b, "X-Forwarded-Host: "...), v.host...), "\r\n"...)
	b = append(append(append(b, "X-Forwarded-Proto: "...), v.proto...), "\r\n"...)
	if v.client.IsValid() {
		b = append(v.client.AppendTo(append(b, "X-Real-Ip: "...)), "\r\n"...)
	}
	for _, f := range v.fwdPrior {
		b = append(append(append(b, "Forwarded: "...), f...), "\r\n"...)
	}
	if v.forwarded {
		b = append(v.appendForwarded(append(b, "Forwarded: "...)), "\r\n"...)
	}
	return b
}

// appendForwarded appends this hop's Forwarded element: for (the peer),
// host and proto, quoted where RFC 7239 needs it.
func (v *values) appendForwarded(b []byte) []byte {
	if v.peer.IsValid() {
		b = append(b, "for="...)
		if v.peer.Is6() {
			b = append(v.peer.AppendTo(append(b, `"[`...)), `]"`...)
		} else {
			b = v.peer.AppendTo(b)
		}
		b = append(b, ';')
	}
	b = append(b, "host="...)
	b = appendQuoted(b, v.host)
	return append(append(b, ";proto="...), v.proto...)
}

// appendQuoted appends s as an RFC 7230 quoted-string.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}
