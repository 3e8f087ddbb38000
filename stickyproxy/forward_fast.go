package stickyproxy

import (
	"net/http"
	"time"

	"github.com/samlha/samlha/stickyproxy/upstream"
)

// The fast engine is package upstream's HTTP/1.1 hop (shared with the
// SP's gateway) over each target's connection pool. Everything it does not
// take goes through httputil.ReverseProxy.

// MaxResponseHeaderBytes bounds a target's reply head, in both engines.
const MaxResponseHeaderBytes = upstream.MaxResponseHeaderBytes

// fastOK says whether the fast engine can take r for x.t: a body already
// in memory of any size, else one of known length up to upstream.MaxBody.
func fastOK(r *http.Request, x *exchange) bool { return x.t.pool.Takes(r, x.buffered != nil) }

// forwardFast forwards r to x.t over the target's connection pool.
func (p *Proxy) forwardFast(w http.ResponseWriter, r *http.Request, x *exchange) error {
	return p.engine.Forward(w, r, &x.t.pool, x)
}

// An exchange is the fast engine's upstream.Exchange.
var _ upstream.Exchange = (*exchange)(nil)

func (x *exchange) Sent(t time.Time)                   { x.sent = t }
func (x *exchange) Answered(d time.Duration)           { x.upstream = d }
func (x *exchange) HasBody() bool                      { return x.hasBody() }
func (x *exchange) BodyRead() bool                     { return x.bodyRead() }
func (x *exchange) BodyFailed() bool                   { return x.cbody != nil && x.cbody.err != nil }
func (x *exchange) AppendHead(b []byte) []byte         { return b }
func (x *exchange) Decorate(h http.Header, status int) { x.decorate(h, status) }
