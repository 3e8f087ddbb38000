package stickyproxy

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httputil"
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
			// ReverseProxy has removed the hop-by-hop headers (keeping an
			// upgrade) and the client's X-Forwarded-*, as
			// forward.RemoveHopByHop would.
			p.fwd.Set(pr.Out.Header, pr.In)
			if n := p.strip.Strip(pr.Out.Header); n > 0 {
				p.m.stripped.Add(float64(n))
			}
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
