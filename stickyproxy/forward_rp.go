package stickyproxy

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"time"
)

type exchangeKey struct{}

// bufferPool adapts the proxy's buffers to httputil.BufferPool.
type bufferPool struct{ p *Proxy }

func (b bufferPool) Get() []byte  { return *b.p.bufs.Get().(*[]byte) }
func (b bufferPool) Put(v []byte) { b.p.bufs.Put(&v) }

// newReverseProxy builds the ReverseProxy engine: it forwards to the target
// the exchange in the request's context names.
func (p *Proxy) newReverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			x := pr.In.Context().Value(exchangeKey{}).(*exchange)
			pr.SetURL(x.t.url)
			pr.Out.Host = pr.In.Host // the application sees the public host, as behind ALB or HAProxy
			p.setForwarded(pr.In, pr.Out.Header)
			x.sent = time.Now()
		},
		Transport:  p.transport,
		BufferPool: bufferPool{p},
		ModifyResponse: func(resp *http.Response) error {
			x := resp.Request.Context().Value(exchangeKey{}).(*exchange)
			x.upstream = time.Since(x.sent)
			x.decorate(resp.Header, resp.StatusCode)
			if resp.Header["Content-Type"] == nil {
				// As in the fast engine: no Content-Type from the target,
				// none sniffed. (Set here, after any 1xx, whose relay
				// clears the header map.)
				x.w.Header()["Content-Type"] = nil
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// Record only: forward decides between a retry and a 502.
			r.Context().Value(exchangeKey{}).(*exchange).err = err
		},
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
}

// forwardRP forwards through httputil.ReverseProxy; it is the engine for
// upgrades (WebSocket) and the whole of --engine=reverseproxy.
func (p *Proxy) forwardRP(w http.ResponseWriter, r *http.Request, x *exchange) {
	ctx := context.WithValue(r.Context(), exchangeKey{}, x)
	x.w = w
	p.rp.ServeHTTP(w, r.WithContext(ctx))
	x.w = nil
	if x.err == nil && x.status == http.StatusSwitchingProtocols {
		x.upstream = time.Since(x.sent)
	}
}

// setForwarded sets X-Forwarded-For, -Proto and -Host on out from the real
// connection of in. Client-supplied values are kept (and the peer appended to
// X-Forwarded-For) only when the peer is a trusted proxy; otherwise they are
// dropped, along with Forwarded.
func (p *Proxy) setForwarded(in *http.Request, out http.Header) {
	peer := clientIP(in.RemoteAddr)
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	host := in.Host
	xff := peer
	if p.trusted(peer) {
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
			xff = joinComma(prior) + ", " + peer
		}
		if v := in.Header.Get("X-Forwarded-Proto"); v != "" {
			proto = v
		}
		if v := in.Header.Get("X-Forwarded-Host"); v != "" {
			host = v
		}
		if v := in.Header["Forwarded"]; len(v) > 0 {
			out["Forwarded"] = v
		}
	} else {
		delete(out, "Forwarded")
	}
	out["X-Forwarded-For"] = []string{xff}
	out["X-Forwarded-Proto"] = []string{proto}
	out["X-Forwarded-Host"] = []string{host}
}

func joinComma(vals []string) string {
	if len(vals) == 1 {
		return vals[0]
	}
	s := vals[0]
	for _, v := range vals[1:] {
		s += ", " + v
	}
	return s
}

// trusted says whether ip is in --trusted-proxies.
func (p *Proxy) trusted(ip string) bool {
	if len(p.cfg.TrustedProxies) == 0 {
		return false
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, pfx := range p.cfg.TrustedProxies {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}
