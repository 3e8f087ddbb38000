package login

import (
	"net/http"
	"strings"

	"github.com/samlha/samlha/sp/access"
	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/loginstate"
	"github.com/samlha/samlha/sp/relaystate"
	"github.com/samlha/samlha/sp/returnurl"
)

// IDPInitiated accepts IdP-initiated (unsolicited) logins: a response that
// answers no AuthnRequest. Such a response is bound to no browser and no
// tracked request, so the only defence against its replay is the assertion
// replay record: it must be in a store every replica shares.
type IDPInitiated struct {
	// RedirectPrefixes are the paths the RelayState may name as the
	// return path (local paths only); any other RelayState goes to "/".
	RedirectPrefixes []string
	// AcceptLocalReplay lets a per-replica store (memory) or stateless mode
	// accept IdP-initiated logins although a response replayed to another
	// replica would be accepted there once more.
	AcceptLocalReplay bool
}

// returnPath is where an IdP-initiated login lands: the RelayState when it
// is a local path (by policy) under one of the prefixes, else "/".
func (c *IDPInitiated) returnPath(policy returnurl.Policy, rs string) string {
	if rs == "" || rs[0] != '/' {
		return "/"
	}
	target, f := policy.Check(rs)
	if f != nil {
		return "/"
	}
	p, _, _ := strings.Cut(target, "?")
	for _, pre := range c.RedirectPrefixes {
		if access.Under(p, pre) {
			return target
		}
	}
	return "/"
}

// isOurRelayState reports whether rs has the form of a RelayState this
// SP issues (an SP-initiated login).
func isOurRelayState(rs string) bool {
	_, _, err := relaystate.Parse(rs)
	return err == nil
}

// finishIDPInitiated finishes an IdP-initiated login: the response must
// carry no InResponseTo (crewjam's AllowIDPInitiated), and its assertion
// is recorded as used in the shared replay record with the new session.
func (e acs) finishIDPInitiated(w http.ResponseWriter, r *http.Request, rt *liveConfig, rs string) (*loginstate.Tracked, *failure.Failure) {
	tr := &loginstate.Tracked{Origin: "idp-initiated", URI: e.cfg.IDPInitiated.returnPath(e.cfg.ReturnURL, rs)}
	assertion, err := rt.idpParser.ParseResponse(r, nil)
	if err != nil {
		return tr, responseFailure(r, err)
	}
	if e.cfg.Store != nil {
		return tr, e.commitLogin(w, r, assertion, "")
	}
	if err := rt.mw.Session.CreateSession(w, r, assertion); err != nil {
		return tr, &failure.Failure{Cause: failure.CauseResponseInvalid, Reason: "session", Detail: "cannot create session: " + err.Error(), Err: err}
	}
	return tr, nil
}
