package sp

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/limits"
	"github.com/samlha/samlha/sp/loginstate"
	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/sp/session"
	"github.com/samlha/samlha/store"
)

// serveACS finishes a login. Unlike crewjam's ServeACS it consumes the
// tracked request first, in one atomic store operation, so that every way a
// login can fail is told apart and named: the state is elsewhere, expired,
// used, unknown, or not this browser's; the store is down; the response is
// invalid or replayed. Every outcome is logged, counted and timed here.
func (s *SP) serveACS(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	tr, f := s.finishLogin(w, r)
	result := "success"
	if f != nil {
		if tr != nil {
			f.Origin, f.RequestID = tr.Origin, tr.RequestID
		}
		result = string(f.Cause)
		s.resp.Fail(w, r, f)
	} else {
		s.m.loginsSucceeded.Inc()
		s.log.Info("login succeeded", "request_id", tr.RequestID, "login_instance", tr.Origin,
			"cross_instance", tr.Origin != s.cfg.InstanceID, "duration", time.Since(start))
		http.Redirect(w, r, s.returnURL.Landing(tr.URI), http.StatusFound)
	}
	s.m.acsDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
}

// finishLogin does the ACS's work: it returns the tracked request it
// consumed (once it has one) and the failure, if any. On success it has set
// the session cookie on w.
func (s *SP) finishLogin(w http.ResponseWriter, r *http.Request) (*loginstate.Tracked, *failure.Failure) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, &failure.Failure{Cause: failure.CauseRequestMalformed, Detail: "ACS called with " + r.Method}
	}
	rt := s.rt.Load()
	if rt == nil {
		return nil, &failure.Failure{Cause: failure.CauseIdPMetadataUnavailable, Detail: "IdP metadata not loaded yet"}
	}
	if f := limits.Body(w, r, limits.MaxACSBody); f != nil {
		return nil, f
	}
	if r.PostForm.Get("SAMLResponse") == "" {
		return nil, &failure.Failure{Cause: failure.CauseRequestMalformed, Detail: "no SAMLResponse in the form"}
	}
	// crewjam reads a SAMLart (form or query) before the SAMLResponse and
	// would resolve it with the IdP, then parse the reply unscreened. The
	// SP offers only the HTTP-POST binding at its ACS.
	if _, art := r.Form["SAMLart"]; art {
		return nil, &failure.Failure{Cause: failure.CauseRequestMalformed, Detail: "SAMLart in the request: the artifact binding is not offered"}
	}
	// Refused before the state is taken and before anything parses the
	// XML: a DTD has no place in SAML, so a response that carries one
	// neither burns the login it names nor reaches a parser.
	if f := screenResponse(r.PostForm.Get("SAMLResponse")); f != nil {
		return nil, f
	}
	rs := r.PostForm.Get("RelayState")
	if s.cfg.IDPInitiated != nil && !isOurRelayState(rs) {
		return s.finishIDPInitiated(w, r, rt, rs)
	}
	if rs == "" {
		return nil, &failure.Failure{Cause: failure.CauseStateUnknown, Detail: "no RelayState: IdP-initiated login is not enabled"}
	}
	tr, f := rt.state.Finish(w, r, rs)
	if f != nil {
		return nil, f
	}
	assertion, err := rt.parser.ParseResponse(r, []string{tr.RequestID})
	if err != nil {
		return tr, classifyResponseError(err)
	}
	if s.sessions != nil {
		return tr, s.commitLogin(w, r, assertion, tr.Origin)
	}
	if err := rt.mw.Session.CreateSession(w, r, assertion); err != nil {
		return tr, &failure.Failure{Cause: failure.CauseResponseInvalid, Reason: "session", Detail: "cannot create session: " + err.Error(), Err: err}
	}
	return tr, nil
}

// classifyResponseError turns crewjam's error into a failure.Failure. The reason
// is one of a fixed set, for the metric label; the private detail goes to
// the log only (crewjam's InvalidResponseError.Response, the raw XML, is
// never logged).
func classifyResponseError(err error) *failure.Failure {
	f := &failure.Failure{Cause: failure.CauseResponseInvalid, Err: err}
	var ire *saml.InvalidResponseError
	if errors.As(err, &ire) && ire.PrivateErr != nil {
		f.Detail = ire.PrivateErr.Error()
	} else {
		f.Detail = err.Error()
	}
	var badStatus saml.ErrBadStatus
	switch {
	case isUnsigned(err):
		f.Reason = "unsigned"
	case errors.Is(err, store.ErrFull):
		f.Cause = failure.CauseStoreFull
	case store.IsUnavailable(err):
		f.Cause = failure.CauseStoreUnavailable
	case errors.Is(err, saml.ErrAssertionReplayed):
		f.Cause = failure.CauseAssertionReplayed
	case errors.As(err, &badStatus):
		f.Reason = "status"
	default:
		f.Reason = "other"
		for _, r := range responseReasons {
			if errors.Is(err, r.sentinel) {
				f.Reason = r.reason
				break
			}
		}
	}
	return f
}

// screenResponse looks at the SAMLResponse of an ACS POST before crewjam
// does: it decodes it as crewjam does (HTTP-POST: base64, no deflate) and
// refuses a document with a DTD (reason "dtd"). What does not decode is
// refused as malformed, as crewjam would.
func screenResponse(b64 string) *failure.Failure {
	doc, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return &failure.Failure{Cause: failure.CauseResponseInvalid, Reason: "malformed", Detail: "SAMLResponse is not base64: " + err.Error(), Err: err}
	}
	if err := checkNoDTD(doc); err != nil {
		return &failure.Failure{Cause: failure.CauseResponseInvalid, Reason: "dtd", Detail: err.Error(), Err: err}
	}
	return nil
}

// crewjamUnsignedText is the text of crewjam's unexported
// errSignatureElementNotPresent, which ParseResponse returns when neither
// the Response nor the assertion carries a Signature: the stripped
// signature. crewjam exports no sentinel for it, so it is matched by text;
// the battery's stripped-signature cases (TestHostileResponses, real
// responses through crewjam's ParseResponse) break if crewjam changes it.
const crewjamUnsignedText = "signature element not present"

// isUnsigned reports whether err, or an error it wraps, is crewjam's
// "signature element not present".
func isUnsigned(err error) bool {
	if err == nil {
		return false
	}
	if err.Error() == crewjamUnsignedText {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return isUnsigned(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if isUnsigned(e) {
				return true
			}
		}
	}
	return false
}

// responseReasons maps crewjam's sentinels to the reason label, most
// specific first: an untrusted certificate is also an invalid signature.
var responseReasons = []struct {
	sentinel error
	reason   string
}{
	{saml.ErrUntrustedCertificate, "untrusted-certificate"},
	{saml.ErrCertificateNotValidNow, "certificate-not-valid-now"},
	{saml.ErrDecryptionFailed, "decryption"},
	{saml.ErrInvalidSignature, "signature"},
	{saml.ErrExpired, "expired"},
	{saml.ErrNotYetValid, "not-yet-valid"},
	{saml.ErrIssuerMismatch, "issuer"},
	{saml.ErrDestinationMismatch, "destination"},
	{saml.ErrRequestIDMismatch, "in-response-to"},
	{saml.ErrAudienceMismatch, "audience"},
	{saml.ErrMalformedMessage, "malformed"},
	{saml.ErrMissingElement, "missing-element"},
	{saml.ErrUnsupported, "unsupported"},
}

// startLogin sends the browser to the IdP with a new AuthnRequest tracked in
// the login state. Unlike crewjam's HandleStartAuthFlow, a store failure is
// a 503 with its cause, not a 500 with the error text.
func (s *SP) startLogin(w http.ResponseWriter, r *http.Request, rt *liveConfig) {
	s.startLoginTo(w, r, rt, "")
}

// startLoginTo starts a login that returns to target: "" is r's own path and
// query (returnURI); anything else is a return URL the caller has already
// checked (forward-auth's rd, against --allowed-redirect-hosts).
func (s *SP) startLoginTo(w http.ResponseWriter, r *http.Request, rt *liveConfig, target string) {
	sp := &rt.mw.ServiceProvider
	binding := saml.HTTPRedirectBinding
	loc := sp.GetSSOBindingLocation(binding)
	if loc == "" {
		binding = saml.HTTPPostBinding
		loc = sp.GetSSOBindingLocation(binding)
	}
	if loc == "" {
		s.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseIdPMetadataUnavailable, Detail: "IdP metadata lists no SSO endpoint for HTTP-Redirect or HTTP-POST"})
		return
	}
	authReq, err := sp.MakeAuthenticationRequest(loc, binding, saml.HTTPPostBinding)
	if err != nil {
		s.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseIdPMetadataUnavailable, Detail: "cannot make AuthnRequest: " + err.Error(), Err: err})
		return
	}
	uri, now, ok := s.admitLogin(w, r, target)
	if !ok {
		return
	}
	rs, err := rt.state.Begin(w, r, authReq.ID, uri)
	if err != nil {
		s.logins.Release(now)
		s.resp.Fail(w, r, failure.FromStore(err, s.cfg.InstanceID))
		return
	}
	s.m.loginsStarted.Inc()
	s.log.Debug("login started", "request_id", authReq.ID, "return_to", r.URL.Path)
	w.Header().Set("Cache-Control", "no-cache, no-store")
	w.Header().Set("Pragma", "no-cache")
	if binding == saml.HTTPRedirectBinding {
		u, err := authReq.Redirect(rs, sp)
		if err != nil {
			s.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseIdPMetadataUnavailable, Detail: "cannot encode AuthnRequest: " + err.Error(), Err: err})
			return
		}
		http.Redirect(w, r, u.String(), http.StatusFound)
		return
	}
	respond.WriteAuthnRequestForm(w, authReq, rs)
}

// reloginCookie counts how often this browser was sent to log in again
// because its session cookie named a session this replica could not use.
const reloginCookie = "samlha_relogin"

// requireAccount serves next if the request has a session, and starts a
// login otherwise. A browser whose session cookie names a session this
// replica cannot use (it lives on another replica, or is signed with
// another key) is sent to log in again at most MaxRelogins times in a row;
// after that the SP explains instead of looping.
func (s *SP) requireAccount(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := s.live(w, r)
		if rt == nil {
			return
		}
		sess, err := rt.mw.Session.GetSession(r)
		if err == nil && sess != nil {
			if _, err := r.Cookie(reloginCookie); err == nil {
				http.SetCookie(w, &http.Cookie{Name: reloginCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.cookies.Secure, SameSite: http.SameSiteLaxMode})
			}
			next.ServeHTTP(w, r.WithContext(samlsp.ContextWithSession(r.Context(), sess)))
			return
		}
		if err != nil && !errors.Is(err, samlsp.ErrNoSession) {
			s.resp.Fail(w, r, failure.FromStore(err, ""))
			return
		}
		if _, ckErr := r.Cookie(session.CookieName); ckErr != nil {
			s.startLogin(w, r, rt) // no session cookie at all: an ordinary first login
			return
		}
		miss := &session.Miss{Kind: "invalid", Detail: "session cookie does not verify: " + errString(err)}
		if !errors.As(err, &miss) && s.cfg.Store == nil {
			miss.Origin = "another replica"
		}
		s.m.sessionMisses.WithLabelValues(miss.Kind).Inc()
		n := 0
		if ck, err := r.Cookie(reloginCookie); err == nil {
			n, _ = strconv.Atoi(ck.Value)
		}
		if n >= s.cfg.MaxRelogins && (miss.Kind == "cross-instance" || miss.Kind == "invalid" || miss.Kind == "not-found") {
			c := failure.CauseSessionInvalid
			if miss.Kind == "cross-instance" {
				c = failure.CauseSessionCrossInstance
			}
			s.resp.Fail(w, r, &failure.Failure{Cause: c, Origin: miss.Origin,
				Detail: miss.Detail + "; gave up after " + strconv.Itoa(n) + " re-logins"})
			return
		}
		s.log.Info("session unusable, logging in again", "kind", miss.Kind, "origin", miss.Origin, "attempt", n+1, "detail", miss.Detail)
		http.SetCookie(w, &http.Cookie{Name: reloginCookie, Value: strconv.Itoa(n + 1), Path: "/", MaxAge: 600,
			HttpOnly: true, Secure: s.cookies.Secure, SameSite: http.SameSiteLaxMode})
		s.startLogin(w, r, rt)
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// onLibraryError is crewjam's OnError, for the flows it still runs
// (logout): log the private cause, never the XML, and explain.
func (s *SP) onLibraryError(w http.ResponseWriter, r *http.Request, err error) {
	f := classifyResponseError(err)
	if f.Cause == failure.CauseResponseInvalid {
		f.Reason = "logout-" + f.Reason
	}
	s.resp.Fail(w, r, f)
}

// commitLogin records the assertion as used and stores the new session in
// one round trip (a pipelined PutBatch): the replay record is put-if-absent
// and, if it already existed, the session just written is deleted and the
// login refused. This is crewjam's AssertionReplayCache contract (the same
// key as replayCache.Consume), batched with the session write.
func (s *SP) commitLogin(w http.ResponseWriter, r *http.Request, assertion *saml.Assertion, loginInstance string) *failure.Failure {
	if assertion.ID == "" {
		return &failure.Failure{Cause: failure.CauseResponseInvalid, Reason: "missing-element", Detail: "assertion has no ID to check for replay"}
	}
	ck, sess, err := s.sessions.NewSession(assertion, loginInstance)
	if err != nil {
		return &failure.Failure{Cause: failure.CauseResponseInvalid, Reason: "session", Detail: "cannot create session: " + err.Error(), Err: err}
	}
	value, err := s.sessions.Seal(ck, sess)
	if err != nil {
		return &failure.Failure{Cause: failure.CauseResponseInvalid, Reason: "session", Detail: err.Error(), Err: err}
	}
	now := s.now()
	// An assertion is never accepted after IssueInstant + MaxIssueDelay
	// (+ skew), so its record is kept that long.
	until := assertion.IssueInstant.Add(saml.MaxIssueDelay + saml.MaxClockSkew)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.StoreTimeout)
	defer cancel()
	sessKey := ck.StoreKey()
	res := s.cfg.Store.PutBatch(ctx, []store.Write{
		{Key: session.ReplayKey(assertion.ID), Value: []byte{1}, TTL: session.ReplayTTL(until, now), IfAbsent: true},
		{Key: sessKey, Value: value, TTL: s.sessions.TTL(sess, now)},
	})
	if res[0] != nil || res[1] != nil {
		if res[1] == nil {
			_ = s.cfg.Store.Delete(ctx, sessKey)
		}
		if errors.Is(res[0], store.ErrExists) {
			return &failure.Failure{Cause: failure.CauseAssertionReplayed, Detail: "assertion " + assertion.ID + " was accepted before"}
		}
		err := errors.Join(res[0], res[1])
		s.storeError("put-batch", err)
		return failure.FromStore(err, "")
	}
	s.sessions.ReplaceCookie(w, r, ck, sess)
	return nil
}
