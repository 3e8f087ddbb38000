package sptest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// NewTransport returns an http.Transport tuned for many scripted browsers
// sharing it under load (large idle pools, dial and TLS timeouts, no
// proxy from the environment), that dials the addresses in resolve instead
// of looking names up, and trusts rootCAs (nil: the system roots) for TLS.
//
// resolve maps "host:port" or "host" to "ip:port" or "ip" (a value without
// a port keeps the URL's port); "host:port" wins over "host". It lets an IdP
// and an SP live on different sites, such as idp.samlha-idp.test and
// sp.samlha-sp.test, while both listen on loopback: URLs, Host headers,
// cookies, origins and TLS server names keep the names, only the dial goes
// to the mapped address. Names not in resolve are looked up as usual,
// except the reserved ".test", ".invalid" and ".example" names, which fail
// at once instead of reaching a DNS server.
func NewTransport(resolve map[string]string, rootCAs *x509.CertPool) *http.Transport {
	r := make(map[string]string, len(resolve))
	for k, v := range resolve {
		r[strings.ToLower(k)] = v
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: nil, // the lab talks to its own loopback servers only
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			to := resolveAddr(r, addr)
			if host, _, err := net.SplitHostPort(to); err == nil && isReservedName(host) {
				// Never ask DNS for the lab's made-up names.
				return nil, fmt.Errorf("sptest: %s is a reserved name (RFC 6761) with no Resolve entry", host)
			}
			return dialer.DialContext(ctx, network, to)
		},
		TLSClientConfig:       &tls.Config{RootCAs: rootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   5 * time.Second,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
}

// resolveAddr maps addr ("host:port") through resolve, whose keys are
// lower case.
func resolveAddr(resolve map[string]string, addr string) string {
	if len(resolve) == 0 {
		return addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	host = strings.ToLower(host)
	to, ok := resolve[net.JoinHostPort(host, port)]
	if !ok {
		if to, ok = resolve[host]; !ok {
			return addr
		}
	}
	if _, _, err := net.SplitHostPort(to); err != nil {
		return net.JoinHostPort(strings.Trim(to, "[]"), port)
	}
	return to
}

// isReservedName reports whether host is under a top-level domain reserved
// for tests (RFC 6761), which no DNS server should be asked about.
func isReservedName(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, tld := range []string{"test", "invalid", "example"} {
		if host == tld || strings.HasSuffix(host, "."+tld) {
			return true
		}
	}
	return false
}
