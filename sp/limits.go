package sp

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/loginstate"
)

// Bounds on what a request may make the SP read or keep (README "Bounds on
// input"). The body limits are fixed: SAML messages are kilobytes, and the
// SP's own forms carry one token.
const (
	// DefaultMaxReturnURL is the default of Config.MaxReturnURL.
	DefaultMaxReturnURL = 2 << 10
	// MaxStoredURI is the largest Config.MaxReturnURL accepted: the
	// tracked-request codec refuses longer strings on both sides.
	MaxStoredURI = loginstate.MaxURI
	// MaxStatelessReturnURL is the largest Config.MaxReturnURL in stateless
	// mode: crewjam's tracking cookie, a signed JWT holding the URL, is
	// 3,485 bytes with a 2,048-byte URL and passes the 4,096 bytes browsers
	// keep of a cookie at about 2.5 KiB.
	MaxStatelessReturnURL = DefaultMaxReturnURL

	// MaxACSBody bounds the form POSTed to /saml/acs.
	MaxACSBody = 1 << 20
	// MaxSLOBody bounds the form POSTed to /saml/slo (logout messages are
	// far smaller than assertions).
	MaxSLOBody = 256 << 10
	// MaxFormBody bounds the SP's own forms (/logout).
	MaxFormBody = 4 << 10
)

// limitBody bounds r's body to n bytes and parses its form. A body over the
// limit is request-too-large (413); any other parse error is
// request-malformed.
func limitBody(w http.ResponseWriter, r *http.Request, n int64) *failure.Failure {
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

// describeLimits names the configured bounds, for the startup log.
func (c *Config) describeLimits() string {
	var b strings.Builder
	fmt.Fprintf(&b, "max-return-url=%d", c.MaxReturnURL)
	fmt.Fprintf(&b, " login-rate-per-client=%s", describeRate(c.LoginLimits.PerClientRate, c.LoginLimits.PerClientBurst))
	fmt.Fprintf(&b, " login-rate=%s", describeRate(c.LoginLimits.TotalRate, c.LoginLimits.TotalBurst))
	fmt.Fprintf(&b, " max-pending-logins=%d", c.LoginLimits.MaxPending)
	return b.String()
}

func describeRate(r float64, burst int) string {
	if r < 0 {
		return "off"
	}
	return fmt.Sprintf("%g/s burst %d", r, burst)
}
