package sp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/crewjam/saml"

	"github.com/samlha/samlha/store"
)

func TestClassifyResponseError(t *testing.T) {
	t.Parallel()
	wrap := func(errs ...error) error {
		return &saml.InvalidResponseError{PrivateErr: fmt.Errorf("private detail: %w", errors.Join(errs...)), Response: "<Response>secret</Response>"}
	}
	for _, tc := range []struct {
		err    error
		cause  Cause
		reason string
	}{
		{wrap(saml.ErrInvalidSignature, saml.ErrUntrustedCertificate), CauseResponseInvalid, "untrusted-certificate"},
		{wrap(saml.ErrInvalidSignature), CauseResponseInvalid, "signature"},
		{wrap(saml.ErrExpired), CauseResponseInvalid, "expired"},
		{wrap(saml.ErrNotYetValid), CauseResponseInvalid, "not-yet-valid"},
		{wrap(saml.ErrAudienceMismatch), CauseResponseInvalid, "audience"},
		{wrap(saml.ErrRequestIDMismatch), CauseResponseInvalid, "in-response-to"},
		{wrap(saml.ErrDecryptionFailed), CauseResponseInvalid, "decryption"},
		{wrap(saml.ErrDestinationMismatch), CauseResponseInvalid, "destination"},
		{wrap(saml.ErrMalformedMessage), CauseResponseInvalid, "malformed"},
		{wrap(saml.ErrBadStatus{Status: "urn:oasis:names:tc:SAML:2.0:status:Requester"}), CauseResponseInvalid, "status"},
		{wrap(errors.New("something new")), CauseResponseInvalid, "other"},
		{wrap(saml.ErrAssertionReplayed), CauseAssertionReplayed, ""},
		{wrap(store.Unavailable("put-if-absent", errors.New("connection refused"))), CauseStoreUnavailable, ""},
		{wrap(store.ErrFull), CauseStoreFull, ""},
	} {
		f := classifyResponseError(tc.err)
		if f.Cause != tc.cause || f.Reason != tc.reason {
			t.Errorf("%v: got %s/%s, want %s/%s", tc.err, f.Cause, f.Reason, tc.cause, tc.reason)
		}
		if f.Detail == "" || f.Detail == "Authentication failed" {
			t.Errorf("%v: detail %q should be crewjam's private reason", tc.err, f.Detail)
		}
		if strings.Contains(f.Detail, "secret") {
			t.Errorf("the raw response leaked into the detail: %q", f.Detail)
		}
	}
}

// Only store errors are called store errors: anything else is internal,
// so an outage is never claimed for what was not one.
func TestStoreFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err    error
		cause  Cause
		status int
	}{
		{store.Unavailable("get", errors.New("connection refused")), CauseStoreUnavailable, 503},
		{store.ErrClosed, CauseStoreUnavailable, 503},
		{fmt.Errorf("put: %w", store.ErrFull), CauseStoreFull, 503},
		{fmt.Errorf("redis put: %w", context.DeadlineExceeded), CauseStoreUnavailable, 503}, // the SP's --store-timeout ran out
		{errors.New("cannot sign the tracking cookie"), CauseInternal, 500},
		{fmt.Errorf("put: %w", store.ErrInvalid), CauseInternal, 500},
	} {
		f := storeFailure(tc.err, "sp-1")
		if f.Cause != tc.cause || f.Cause.Status() != tc.status || f.Detail == "" {
			t.Errorf("%v: %s (%d), want %s (%d)", tc.err, f.Cause, f.Cause.Status(), tc.cause, tc.status)
		}
	}
}
