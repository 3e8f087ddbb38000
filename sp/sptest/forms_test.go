package sptest

import (
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The markup below is what crewjam/saml v0.6.3 renders (its templates, with
// values filled in): the SP's HTTP-POST AuthnRequest form, the IdP's
// response form, and samlidp's login form, which carries SAMLRequest too.
const (
	crewjamAuthnRequestForm = `<form method="post" action="http://idp.samlha-idp.test:9000/sso" id="SAMLRequestForm">` +
		`<input type="hidden" name="SAMLRequest" value="PHNhbWxwOkF1dGhuUmVxdWVzdA==" />` +
		`<input type="hidden" name="RelayState" value="abc_-123" />` +
		`<input id="SAMLSubmitButton" type="submit" value="Submit" />` +
		`</form>` +
		`<script nonce="n0nce">document.getElementById('SAMLSubmitButton').style.visibility="hidden";` +
		`document.getElementById('SAMLRequestForm').submit();</script>`

	crewjamResponseForm = `<html xmlns="http://www.w3.org/1999/xhtml">` +
		`<head><title>Continue</title></head>` +
		`<body>` +
		`<form method="post" action="http://sp.samlha-sp.test:8081/saml/acs" id="SAMLResponseForm">` +
		`<input type="hidden" name="SAMLResponse" value="PHNhbWxwOlJlc3BvbnNlPg==" />` +
		`<input type="hidden" name="RelayState" value="abc_-123" />` +
		`<input id="SAMLSubmitButton" type="submit" value="Continue" />` +
		`</form>` +
		`<script>document.getElementById('SAMLSubmitButton').style.visibility='hidden';</script>` +
		`<script>document.getElementById('SAMLResponseForm').submit();</script>` +
		`</body>` +
		`</html>`

	samlidpLoginForm = `<html xmlns="http://www.w3.org/1999/xhtml">` +
		`<head><title>Log in</title></head>` +
		`<body>` +
		`<p></p>` +
		`<form method="post" action="http://idp.samlha-idp.test:9000/sso">` +
		`<input type="text" name="user" placeholder="user" value="" />` +
		`<input type="password" name="password" placeholder="password" value="" />` +
		`<input type="hidden" name="SAMLRequest" value="PHNhbWxwOkF1dGhuUmVxdWVzdA==" />` +
		`<input type="hidden" name="RelayState" value="abc_-123" />` +
		`<input type="submit" value="Log In" />` +
		`</form>` +
		`</body>` +
		`</html>`
)

func TestParseForms(t *testing.T) {
	t.Parallel()
	type formView struct {
		Method, Action    string
		Fields            url.Values
		Password, AutoSub bool
	}
	view := func(forms []*form) []formView {
		var out []formView
		for _, f := range forms {
			out = append(out, formView{f.method, f.action.String(), f.fields, f.password, f.autoSubmits})
		}
		return out
	}
	cases := []struct {
		name, page, body string
		want             []formView
	}{
		{
			name: "crewjam AuthnRequest form (HTTP-POST binding)",
			page: "http://sp.samlha-sp.test:8081/app",
			body: crewjamAuthnRequestForm,
			want: []formView{{"POST", "http://idp.samlha-idp.test:9000/sso",
				url.Values{"SAMLRequest": {"PHNhbWxwOkF1dGhuUmVxdWVzdA=="}, "RelayState": {"abc_-123"}}, false, true}},
		},
		{
			name: "crewjam IdP response form",
			page: "http://idp.samlha-idp.test:9000/sso",
			body: crewjamResponseForm,
			want: []formView{{"POST", "http://sp.samlha-sp.test:8081/saml/acs",
				url.Values{"SAMLResponse": {"PHNhbWxwOlJlc3BvbnNlPg=="}, "RelayState": {"abc_-123"}}, false, true}},
		},
		{
			name: "samlidp login form: a password form, though it carries SAMLRequest",
			page: "http://idp.samlha-idp.test:9000/sso?SAMLRequest=x",
			body: samlidpLoginForm,
			want: []formView{{"POST", "http://idp.samlha-idp.test:9000/sso",
				url.Values{"user": {""}, "password": {""}, "SAMLRequest": {"PHNhbWxwOkF1dGhuUmVxdWVzdA=="}, "RelayState": {"abc_-123"}}, true, true}},
		},
		{
			name: "relative action, base href, default method, checkboxes, select, textarea, entities",
			page: "http://sp.test/a/b",
			body: `<base href="http://sp.test/base/"><form action="go?x=1">` +
				`<input name="t" value="a&amp;b"><input type="checkbox" name="c1" checked><input type="checkbox" name="c2" value="v">` +
				`<select name="s"><option>one</option><option value="2" selected>two</option></select>` +
				`<textarea name="ta">text</textarea><input type="submit" name="go" value="Go"></form>`,
			want: []formView{{"GET", "http://sp.test/base/go?x=1",
				url.Values{"t": {"a&b"}, "c1": {"on"}, "s": {"2"}, "ta": {"text"}}, false, false}},
		},
		{
			name: "empty action posts to the page; two forms",
			page: "http://sp.test/page?q=1",
			body: `<form method="POST"><input type="hidden" name="a" value="1"></form><form method="get" action="/other"></form>`,
			want: []formView{
				{"POST", "http://sp.test/page?q=1", url.Values{"a": {"1"}}, false, false},
				{"GET", "http://sp.test/other", url.Values{}, false, false},
			},
		},
		{
			name: "no form",
			page: "http://sp.test/",
			body: `<html><body><p>hello</p></body></html>`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := view(parseForms(mustParse(t, tc.page), []byte(tc.body)))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("forms (-want +got):\n%s", diff)
			}
		})
	}
}
