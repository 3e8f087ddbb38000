package sp

import (
	"errors"
	"net/http"

	"github.com/crewjam/saml/samlsp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/samlha/samlha/sp/relaystate"
)

// statelessTracker is crewjam's CookieRequestTracker as it is: the tracked
// request travels in a cookie signed with the SP key. Only the RelayState
// follows samlha's format, so the proxy can route by it and failures can
// name the replica that began the login.
type statelessTracker struct {
	cookies  samlsp.CookieRequestTracker
	instance string
}

var _ loginState = (*statelessTracker)(nil)

func (t *statelessTracker) begin(w http.ResponseWriter, r *http.Request, requestID, _ string) (string, error) {
	// CookieRequestTracker records r.URL as the return URI.
	return t.cookies.TrackRequest(w, r, requestID)
}

func (t *statelessTracker) finish(w http.ResponseWriter, r *http.Request, rs string) (*trackedRequest, *Failure) {
	origin, _, perr := relaystate.Parse(rs)
	if perr != nil {
		return nil, &Failure{Cause: CauseStateUnknown, Detail: perr.Error(), Err: perr}
	}
	got, err := t.cookies.GetTrackedRequest(r, rs)
	if err != nil {
		f := &Failure{Cause: CauseStateUnknown, Origin: origin, Detail: err.Error(), Err: err}
		switch {
		case errors.Is(err, http.ErrNoCookie):
			f.Cause = CauseBindingCookieMissing
			f.Detail = "no tracking cookie for this RelayState on the ACS request"
		case errors.Is(err, jwt.ErrTokenExpired):
			f.Cause = CauseStateExpired
		case errors.Is(err, jwt.ErrTokenSignatureInvalid):
			f.Cause = CauseStateSignatureInvalid
			if origin != t.instance {
				f.Detail = "tracking cookie set by " + origin + " does not verify with this instance's key: " + err.Error()
			}
		}
		return nil, f
	}
	if err := t.cookies.StopTrackingRequest(w, r, rs); err != nil {
		return nil, &Failure{Cause: CauseBindingCookieMissing, Origin: origin, Detail: err.Error(), Err: err}
	}
	// The ACS redirects only to a local path (localURI).
	return &trackedRequest{RequestID: got.SAMLRequestID, URI: got.URI, Origin: origin}, nil
}
