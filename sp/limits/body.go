package limits

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/samlha/samlha/sp/failure"
)

// Bounds on what a request may make the SP read or keep (README "Bounds on
// input"). The body limits are fixed: SAML messages are kilobytes, and the
// SP's own forms carry one token.
const (
	// MaxACSBody bounds the form POSTed to /saml/acs.
	MaxACSBody = 1 << 20
	// MaxSLOBody bounds the form POSTed to /saml/slo (logout messages are
	// far smaller than assertions).
	MaxSLOBody = 256 << 10
	// MaxFormBody bounds the SP's own forms (/logout).
	MaxFormBody = 4 << 10
)

// Body bounds r's body to n bytes and parses its form. A body over the
// limit is request-too-large (413); any other parse error is
// request-malformed.
func Body(w http.ResponseWriter, r *http.Request, n int64) *failure.Failure {
	r.Body = http.MaxBytesReader(w, r.Body, n)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &failure.Failure{Cause: failure.CauseRequestTooLarge, Err: err,
				Detail: fmt.Sprintf("%s body over its limit of %d bytes", r.URL.Path, tooBig.Limit)}
		}
		return &failure.Failure{Cause: failure.CauseRequestMalformed, Detail: "cannot parse form: " + err.Error(), Err: err}
	}
	return nil
}

// Describe names the limits, for the startup log.
func (l LoginLimits) Describe() string {
	return fmt.Sprintf("login-rate-per-client=%s login-rate=%s max-pending-logins=%d max-pending-logins-per-client=%d",
		describeRate(l.PerClientRate, l.PerClientBurst), describeRate(l.TotalRate, l.TotalBurst), l.MaxPending, l.share())
}

func describeRate(r float64, burst int) string {
	if r < 0 {
		return "off"
	}
	return fmt.Sprintf("%g/s burst %d", r, burst)
}
