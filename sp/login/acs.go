package login

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/crewjam/saml"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/limits"
	"github.com/samlha/samlha/sp/loginstate"
	"github.com/samlha/samlha/sp/session"
	"github.com/samlha/samlha/store"
)

// ServeACS finishes a login. Unlike crewjam's ServeACS it consumes the
// tracked request first, in one atomic store operation, so that every way a
// login can fail is told apart and named: the state is elsewhere, expired,
// used, unknown, or not this browser's; the store is down; the response is
// invalid or replayed. Every outcome is logged, counted and timed here.
func (e *Engine) ServeACS(w http.ResponseWriter, r *http.Request) { acs{e}.serve(w, r) }

// acs is the engine seen as its assertion consumer service.
type acs struct{ *Engine }

func (e acs) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	tr, f := e.finishLogin(w, r)
	result := "success"
	if f != nil {
		if tr != nil {
			f.Origin, f.RequestID = tr.Origin, tr.RequestID
		}
		result = string(f.Cause)
		e.resp.Fail(w, r, f)
	} else {
		e.m.loginsSucceeded.Inc()
		// The client's share of pending logins gets this one back (on
		// the replica that began it, when the ACS lands there).
		e.cfg.Gate.Done(limits.ClientAddress(r), e.cfg.Now())
		e.log.Info("login succeeded", "request_id", tr.RequestID, "login_instance", tr.Origin,
			"cross_instance", tr.Origin != e.cfg.Instance, "duration", time.Since(start))
		http.Redirect(w, r, e.cfg.ReturnURL.Landing(tr.URI), http.StatusFound)
	}
	e.m.acsDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
}

// finishLogin does the ACS's work: it returns the tracked request it
// consumed (once it has one) and the failure, if any. On success it has set
// the session cookie on w.
func (e acs) finishLogin(w http.ResponseWriter, r *http.Request) (*loginstate.Tracked, *failure.Failure) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, &failure.Failure{Cause: failure.CauseRequestMalformed, Detail: "ACS called with " + r.Method}
	}
	rt := e.rt.Load()
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
	if e.cfg.IDPInitiated != nil && !isOurRelayState(rs) {
		return e.finishIDPInitiated(w, r, rt, rs)
	}
	if !isOurRelayState(rs) {
		// No RelayState of this SP's form: a response no login here
		// asked for, most often an IdP-initiated login, which is off.
		return nil, &failure.Failure{Cause: failure.CauseStateUnknown, Reason: failure.ReasonUnsolicited,
			Detail: "no RelayState of this SP's form (" + failure.Truncate(rs, 80) + "): an unsolicited response, and IdP-initiated login is not enabled (--allow-idp-initiated)"}
	}
	if e.cfg.Store != nil {
		if tk, ok := e.tracker.Ticket(r, rs); ok && !e.recent.seen(rs, e.cfg.Now()) {
			return e.finishTicket(w, r, rt, tk)
		}
	}
	tr, f := rt.state.Finish(w, r, rs)
	if f != nil {
		return nil, f
	}
	assertion, err := rt.parser.ParseResponse(r, []string{tr.RequestID})
	if err != nil {
		return tr, responseFailure(r, err)
	}
	if e.cfg.Store != nil {
		return tr, e.commitLogin(w, r, assertion, tr.Origin)
	}
	// Stateless (also on the way to a shared store, whose replay record
	// rt.parser checked): crewjam's signed session cookie.
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

// onLibraryError is crewjam's OnError, for the flows it still runs
// (logout): log the private cause, never the XML, and explain.
func (e *Engine) onLibraryError(w http.ResponseWriter, r *http.Request, err error) {
	f := classifyResponseError(err)
	f.Op = "logout"
	if f.Cause == failure.CauseResponseInvalid {
		f.Reason = "logout-" + f.Reason
		if r.Context().Value(sloResponseKey{}) != nil {
			// The logout began here and the session is gone already;
			// only the IdP's confirmation could not be verified.
			Logout{e}.unconfirmed(w, r, f)
			return
		}
	}
	e.resp.Fail(w, r, f)
}

// loginRecord is what a login writes: the assertion's replay record
// (put-if-absent, crewjam's AssertionReplayCache contract, the same key as
// session.ReplayCache.Consume) and the new session, sealed.
type loginRecord struct {
	cookie      session.Cookie
	sess        *session.Session
	assertionID string
	writes      []store.Write // replay record, session
}

// newLoginRecord makes the record of a login whose assertion was accepted,
// begun on loginInstance; it writes nothing.
func (e acs) newLoginRecord(assertion *saml.Assertion, loginInstance string) (*loginRecord, *failure.Failure) {
	if assertion.ID == "" {
		return nil, &failure.Failure{Cause: failure.CauseResponseInvalid, Reason: "missing-element", Detail: "assertion has no ID to check for replay"}
	}
	ck, sess, err := e.sessions.NewSession(assertion, loginInstance)
	if err != nil {
		return nil, &failure.Failure{Cause: failure.CauseResponseInvalid, Reason: "session", Detail: "cannot create session: " + err.Error(), Err: err}
	}
	value, err := e.sessions.Seal(ck, sess)
	if err != nil {
		return nil, &failure.Failure{Cause: failure.CauseResponseInvalid, Reason: "session", Detail: err.Error(), Err: err}
	}
	now := e.cfg.Now()
	// An assertion is never accepted after IssueInstant + MaxIssueDelay
	// (+ skew), so its record is kept that long.
	until := assertion.IssueInstant.Add(saml.MaxIssueDelay + saml.MaxClockSkew)
	return &loginRecord{cookie: ck, sess: sess, assertionID: assertion.ID, writes: []store.Write{
		{Key: session.ReplayKey(assertion.ID), Value: []byte{1}, TTL: session.ReplayTTL(until, now), IfAbsent: true},
		{Key: ck.StoreKey(), Value: value, TTL: e.sessions.TTL(sess, now)},
	}}, nil
}

// written settles the results of rec's writes: a replayed assertion (its
// record existed: the session just written is deleted), a store failure,
// or the session cookie set on w.
func (e acs) written(w http.ResponseWriter, r *http.Request, rec *loginRecord, res []error) *failure.Failure {
	if len(res) == len(rec.writes) && res[0] == nil && res[1] == nil {
		e.sessions.ReplaceCookie(w, r, rec.cookie, rec.sess)
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), e.cfg.StoreTimeout)
	defer cancel()
	if len(res) == len(rec.writes) && res[1] == nil {
		_ = e.cfg.Store.Delete(ctx, rec.cookie.StoreKey())
	}
	if len(res) > 0 && errors.Is(res[0], store.ErrExists) {
		return &failure.Failure{Cause: failure.CauseAssertionReplayed, Detail: "assertion " + rec.assertionID + " was accepted before"}
	}
	err := errors.Join(res...)
	if err == nil {
		err = errors.New("the store answered no result for the login's writes")
	}
	e.storeError("login-writes", err)
	return failure.FromStore(err, "")
}

// commitLogin records the assertion as used and stores the new session in
// one round trip (a pipelined PutBatch): the path of a login whose state
// was consumed first (Finish).
func (e acs) commitLogin(w http.ResponseWriter, r *http.Request, assertion *saml.Assertion, loginInstance string) *failure.Failure {
	rec, f := e.newLoginRecord(assertion, loginInstance)
	if f != nil {
		return f
	}
	ctx, cancel := context.WithTimeout(r.Context(), e.cfg.StoreTimeout)
	defer cancel()
	return e.written(w, r, rec, e.cfg.Store.PutBatch(ctx, rec.writes))
}

// finishTicket finishes a login whose browser proves, by its binding
// cookie, which login it began (loginstate.Ticket): the response is
// checked against the AuthnRequest first, then one atomic commit consumes
// the login, records the assertion and stores the session: one round trip
// on memory, standalone Redis and Sentinel. A response that is refused
// burns the login (a second try is "already used" without a parse), and a
// login seen here before goes the careful way (Finish), so no response
// costs more than one full parse per replica.
func (e acs) finishTicket(w http.ResponseWriter, r *http.Request, rt *liveConfig, tk loginstate.Ticket) (*loginstate.Tracked, *failure.Failure) {
	e.recent.add(tk.RelayState, e.cfg.Now())
	assertion, err := rt.parser.ParseResponse(r, []string{tk.RequestID})
	if err != nil {
		e.tracker.Burn(r, tk)
		return &loginstate.Tracked{RequestID: tk.RequestID, Origin: tk.Origin}, responseFailure(r, err)
	}
	rec, f := e.newLoginRecord(assertion, tk.Origin)
	if f != nil {
		e.tracker.Burn(r, tk)
		return &loginstate.Tracked{RequestID: tk.RequestID, Origin: tk.Origin}, f
	}
	tr, res, f, ok := e.tracker.Commit(w, r, tk, rec.writes)
	if !ok {
		// Begun by an earlier release: consume it as it did, then write.
		if tr, f = rt.state.Finish(w, r, tk.RelayState); f != nil {
			return tr, f
		}
		if tr.RequestID != tk.RequestID {
			return tr, &failure.Failure{Cause: failure.CauseBindingMismatch, Origin: tk.Origin, RequestID: tr.RequestID,
				Detail: "the binding cookie names another AuthnRequest than the login's"}
		}
		return tr, e.commitLogin(w, r, assertion, tr.Origin)
	}
	if f != nil {
		f.RequestID = tk.RequestID
		return &loginstate.Tracked{RequestID: tk.RequestID, Origin: tk.Origin}, f
	}
	return tr, e.written(w, r, rec, res)
}

// responseFailure classifies crewjam's refusal of the response r posted;
// for a refusal by the IdP itself (reason "status") it adds what the IdP
// said, for the page.
func responseFailure(r *http.Request, err error) *failure.Failure {
	f := classifyResponseError(err)
	if f.Reason == "status" {
		f.IdPStatus = idpStatus(r.PostForm.Get("SAMLResponse"))
	}
	return f
}

// maxStatusMessage bounds the IdP's StatusMessage shown on the page.
const maxStatusMessage = 200

// idpStatus is the status of the response b64 (a screened, DTD-free
// document) as the page shows it: the status codes, outermost first, and
// the IdP's message, quoted and bounded; "" if it has none. It is the
// IdP's word (or whoever posted the response): the page says so.
func idpStatus(b64 string) string {
	doc, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return ""
	}
	var resp struct {
		Status struct {
			Code    statusCode `xml:"StatusCode"`
			Message string     `xml:"StatusMessage"`
		} `xml:"Status"`
	}
	if xml.Unmarshal(doc, &resp) != nil {
		return ""
	}
	var codes []string
	for c := &resp.Status.Code; c != nil && len(codes) < 3; c = c.Inner {
		if v := strings.TrimPrefix(c.Value, "urn:oasis:names:tc:SAML:2.0:status:"); v != "" && printable(v) {
			codes = append(codes, v)
		}
	}
	out := strings.Join(codes, " / ")
	if m := strings.TrimSpace(resp.Status.Message); m != "" && printable(m) {
		out += fmt.Sprintf(" (%q)", failure.Truncate(m, maxStatusMessage))
	}
	return out
}

type statusCode struct {
	Value string      `xml:"Value,attr"`
	Inner *statusCode `xml:"StatusCode"`
}

// printable reports whether s has no control characters.
func printable(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
