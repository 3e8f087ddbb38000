package forward

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Trusted is a set of peers (front proxies, load balancers) whose
// forwarding headers are believed. The zero value trusts nobody.
type Trusted struct {
	prefixes []netip.Prefix
}

// NewTrusted returns the set of the given prefixes (masked, IPv4-mapped
// addresses unmapped).
func NewTrusted(prefixes []netip.Prefix) Trusted {
	t := Trusted{prefixes: make([]netip.Prefix, 0, len(prefixes))}
	for _, p := range prefixes {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		t.prefixes = append(t.prefixes, p.Masked())
	}
	return t
}

// ParseTrusted parses CIDRs ("10.0.0.0/8") and single addresses
// ("192.0.2.7", "::1"); empty entries are skipped. Every entry that is
// neither is named in the error, which wraps one error per entry.
func ParseTrusted(list []string) (Trusted, error) {
	var (
		prefixes []netip.Prefix
		errs     []error
	)
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := ParsePrefix(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		prefixes = append(prefixes, p)
	}
	return NewTrusted(prefixes), errors.Join(errs...)
}

// ParsePrefix parses one CIDR or address (an address is a prefix of its
// full length), masked.
func ParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Prefixes returns the set's prefixes.
func (t Trusted) Prefixes() []netip.Prefix { return append([]netip.Prefix(nil), t.prefixes...) }

// Empty reports whether the set trusts nobody.
func (t Trusted) Empty() bool { return len(t.prefixes) == 0 }

// Contains reports whether a (IPv4-mapped addresses unmapped, zone
// ignored) is trusted.
func (t Trusted) Contains(a netip.Addr) bool {
	if len(t.prefixes) == 0 || !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// PeerAddr parses the address of a request's TCP peer (http.Request's
// RemoteAddr, "ip:port" or "[ip]:port"), unmapped and without a zone. It
// does not allocate.
func PeerAddr(remoteAddr string) (netip.Addr, bool) {
	host := remoteAddr
	if i := strings.LastIndexByte(remoteAddr, ':'); i >= 0 {
		host = remoteAddr[:i]
		if strings.IndexByte(host, ':') >= 0 && (len(host) < 2 || host[0] != '[' || host[len(host)-1] != ']') {
			// An IPv6 address without a port and brackets.
			host = remoteAddr
		}
	}
	if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// PeerTrusted reports whether r's TCP peer is trusted.
func (t Trusted) PeerTrusted(r *http.Request) bool {
	if len(t.prefixes) == 0 {
		return false
	}
	a, ok := PeerAddr(r.RemoteAddr)
	return ok && t.Contains(a)
}

// ClientAddr returns the address of the client on whose behalf r was
// sent: r's TCP peer, unless that peer is trusted, in which case
// X-Forwarded-For is read from the right and the first address that is
// not trusted is the client. It fails closed to the peer: an entry that is
// not an address stops the walk, and the peer is returned. If every entry
// is trusted, the leftmost is the client (a trusted proxy's own request).
// It returns the zero Addr only when RemoteAddr is not an address (a
// handler called outside a server). It does not allocate.
func (t Trusted) ClientAddr(r *http.Request) netip.Addr {
	peer, ok := PeerAddr(r.RemoteAddr)
	if !ok || !t.Contains(peer) {
		return peer
	}
	return t.walkXFF(r.Header["X-Forwarded-For"], peer)
}

// walkXFF reads the X-Forwarded-For lines from the right (the last line's
// last entry was written by the nearest proxy).
func (t Trusted) walkXFF(lines []string, peer netip.Addr) netip.Addr {
	client := peer
	for i := len(lines) - 1; i >= 0; i-- {
		v := lines[i]
		for v != "" {
			j := strings.LastIndexByte(v, ',')
			entry := trimOWS(v[j+1:])
			if j < 0 {
				v = ""
			} else {
				v = v[:j]
			}
			if entry == "" {
				continue
			}
			a, ok := parseXFFEntry(entry)
			if !ok {
				return peer
			}
			if !t.Contains(a) {
				return a
			}
			client = a
		}
	}
	return client
}

// parseXFFEntry reads an address as proxies write it in X-Forwarded-For:
// bare, or with a port ("192.0.2.1:1234", "[2001:db8::1]:443").
func parseXFFEntry(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.Addr{}, false
		}
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// ClientKey is the address a per-client budget is kept under: an IPv4
// address itself, an IPv6 address's /64 (one subscriber or host usually
// holds a whole /64, and picks any address in it).
func ClientKey(a netip.Addr) netip.Addr {
	if !a.Is6() || a.Is4In6() {
		return a.Unmap()
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.Addr()
}
