package simplesamltest_test

import (
	"fmt"
	"testing"

	"github.com/samlha/samlha/sp/sptest/simplesamltest"
)

// Which signatures samlsp needs on SimpleSAMLphp's response: one on the
// Response or on the Assertion is enough; neither is refused with the
// cause response-invalid.
func TestResponseSignatures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		unsignedResponse, unsignedAssertion bool
		ok                                  bool
	}{
		{unsignedResponse: true, ok: true},
		{unsignedAssertion: true, ok: true},
		{unsignedResponse: true, unsignedAssertion: true, ok: false},
	} {
		t.Run(fmt.Sprintf("response-signed=%v/assertion-signed=%v", !tc.unsignedResponse, !tc.unsignedAssertion), func(t *testing.T) {
			t.Parallel()
			_, s, _ := setup(t, simplesamltest.Config{}, simplesamltest.SPConfig{
				UnsignedResponse: tc.unsignedResponse, UnsignedAssertion: tc.unsignedAssertion,
			}, spOptions{})
			res := browser().Login(ctx(t), s.URL+"/app", "alice", "alice-password")
			t.Logf("ok=%v cause=%q", res.OK, res.Cause)
			switch {
			case tc.ok && !res.OK:
				t.Errorf("login failed:\n%s", describe(res))
			case !tc.ok && (res.OK || res.Cause != "response-invalid"):
				t.Errorf("login with nothing signed: ok=%v cause %q, want refused as response-invalid:\n%s", res.OK, res.Cause, describe(res))
			}
		})
	}
}
