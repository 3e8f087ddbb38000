// Package stickyproxy is a cookie-affinity reverse proxy with the semantics
// of AWS ALB and HAProxy, which says on every response which target served
// it and why.
//
// # Routing
//
// Targets are named (for samlha, the name is the SP replica's instance ID).
// Requests that are not pinned are balanced by round robin (smooth weighted)
// or least outstanding requests. With duration stickiness the proxy pins a
// client with its own cookie (AWSALB by default), whose value is sealed with
// AES-256-GCM (package affinity): it names the target by name, never by
// address, carries an expiry, and is refreshed on every response, the expiry
// computed per response. A cookie that is malformed, forged, sealed under a
// key not in the ring, names an unknown target or has expired counts as no
// cookie: it is counted and the client is re-pinned. With app stickiness the
// proxy's cookie (AWSALBAPP) is issued when the application sets its own
// cookie, honoured only alongside it, and deleted with it.
//
// Every reply carries X-Stickyproxy-Target (the target's name, "none" if
// none) and X-Stickyproxy-Decision, one of:
//
//	balanced            stickiness off; the balancer chose
//	new                 no affinity cookie; balanced and pinned
//	pinned              a valid cookie named a usable target
//	repinned-unhealthy  the pinned target is down; re-pinned elsewhere
//	repinned-draining   the pinned target is draining (ALB semantics); re-pinned
//	invalid-cookie      malformed, forged, old key or unknown target; re-pinned
//	expired             authentic but expired; re-pinned
//	relaystate          ACS POST without a valid cookie, routed by its RelayState
//	strict-refused      the pinned target is down and --on-pinned-down=strict: 503
//	no-target           nothing up (or all draining) and --all-down=503: 503
//	fail-open           nothing healthy and --all-down=fail-open: balanced over all
//	retried             the chosen target could not be connected to; sent elsewhere and re-pinned
//	upstream-error      the target failed after the connection was made: 502, not retried
//	target-busy         the pinned target (or every healthy one) is full: 503
//	client-error        the client's body failed (aborted, too slow): 400 or 408
//	client-limit        the client holds its whole share already: 429
//	proxy-busy          the proxy buffers MaxBufferTotal already: 503
//
// The same names are the "decision" label of stickyproxy_requests_total and
// the access log's "decision" field.
//
// # RelayState (format v1, agreed with package sp)
//
// With SAML-aware routing on, a POST to the ACS path (default /saml/acs)
// that carries no valid affinity cookie is routed by its RelayState form
// field. The SP-initiated login's RelayState is
//
//	<instance>~<nonce>
//
// where <instance> matches [A-Za-z0-9._-]{1,40} and is the SP replica's
// instance ID (the proxy's target name), and <nonce> is 32 characters of
// base64url (24 random bytes); the whole is at most 80 bytes, SAML's limit.
// The proxy reads at most a bounded prefix of an
// application/x-www-form-urlencoded body (RelayStatePeek, 64 KiB by
// default; SAMLResponse, usually 5-20 KB of base64, tends to come first),
// finds RelayState, takes the part before the first "~" and, if a target of
// that name exists and would accept a pinned client, routes there with
// decision relaystate; otherwise it balances as usual. This works with every
// stickiness mode, off included. The reply pins the client (stickiness on)
// only if the target accepted the login (2xx or 3xx), as for any cross-site
// POST without a valid cookie, so a refused forgery moves nobody. The peek
// buffer grows with the data received, never from Content-Length. A field cut off at the
// end of the prefix is not trusted. The peeked prefix and the rest of the
// body are put back together, so the target receives the body unchanged,
// with the same Content-Length.
//
// # Health, draining and failure
//
// Active checks GET each target's health path every interval (2xx and 3xx
// pass) with rise and fall thresholds; passive checks mark a target down
// after consecutive failures of the target itself (see Proxy.forward): never
// for a client that aborts or is slow, a body the target refuses, or a 4xx. Draining (admin API) has ALB semantics
// (nothing more goes to the target, pinned clients are re-pinned) or
// HAProxy's (pinned clients still go there, new ones do not). A request whose
// connection to the target could not be established is retried on another
// target, POST included, since nothing was sent; nothing else is retried. A
// reused idle connection that the target had closed before any byte of a
// reply is replaced by a new one for idempotent requests without a body, by
// both engines, as http.Transport does.
//
// # Bounds
//
// PublicServer and Listener apply the connection bounds (header deadline,
// MaxClientConns, MaxConnsPerClient), for the fast serve loop and net/http's
// server alike; ServeHTTP the rest, in this order:
// the body deadline; a body of known length up to MaxBufferedBody read
// whole, its length reserved first against the client's buffer share and
// the total (MaxBufferPerClient, MaxBufferTotal), or else counted among
// the client's streamed bodies (MaxStreamingPerClient); routing; then one
// of the client's in-flight requests (MaxInFlightPerClient) and a slot of
// the target (MaxInFlightPerTarget), each taken atomically against its
// limit, so that a request whose body has not arrived holds no slot. The
// client is the TCP peer, or behind a trusted proxy the address it names,
// an IPv6 client by its /64. Admin requires Config.AdminToken and refuses
// cross-site requests. The README's "Security and failure behaviour" lists
// each bound and the test that proves it.
//
// # Forwarding
//
// The default "fast" engine is an HTTP/1.1 client driven from the request's
// goroutine over a per-target pool of connections (package
// stickyproxy/upstream, which the SP's gateway shares); requests it does not take
// (upgrades such as WebSocket, bodies of unknown length or over 1 MiB,
// request trailers, https targets) and the whole of the "reverseproxy" engine
// go through httputil.ReverseProxy with Rewrite over one shared, tuned
// http.Transport. Both pass trailers, flush streamed replies, keep the
// client's Host, and follow package forward: hop-by-hop headers removed,
// X-Forwarded-For, -Proto, -Host and X-Real-IP from the real connection
// (a client's own values kept only when its address is in TrustedProxies),
// and the headers StripRequestHeaders and StripRequestHeaderPrefixes name
// removed under any spelling.
//
// # Serving
//
// With HTTPServerFast (the default, with the fast engine and http://
// targets), Listener serves each connection with the fast serve loop: the
// common request head parsed in place, the reply written directly, no
// per-request goroutine or context. The first request it does not take
// (malformed or unusual: HTTP/1.0, Transfer-Encoding, Expect, Upgrade, a
// head over 4 KiB, a body that streams...) hands the connection, with the
// bytes already read, to the http.Server that called Accept, for the rest
// of its life. Drain, after that server's Shutdown, waits for the loop's
// connections.
package stickyproxy
