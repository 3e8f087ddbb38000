package deploy

import (
	"net/http"
	"strings"
	"testing"
)

// identityHeaders are the headers samlsp sets for the app in these tests
// and the reference configs: its own (prefix X-Samlha-) and those of
// --pass-attribute mail=X-Email --pass-attribute eduPersonAffiliation=X-Groups.
var identityHeaders = []string{"X-Samlha-User", "X-Samlha-Name-Id", "X-Samlha-Jwt-Assertion", "X-Email", "X-Groups"}

// cgiName is a header's name as CGI, WSGI and PHP see it.
func cgiName(h string) string {
	return "HTTP_" + strings.ToUpper(strings.ReplaceAll(h, "-", "_"))
}

// spellings are the ways a client can write name that an application
// reading headers the CGI way takes for name: exact, lower, upper, each
// choice of '-' or '_' between its words, and a mixed case.
func spellings(name string) []string {
	words := strings.Split(name, "-")
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	add(name)
	add(strings.ToLower(name))
	add(strings.ToUpper(name))
	for mask := 1; mask < 1<<(len(words)-1); mask++ {
		var b strings.Builder
		for i, w := range words {
			if i > 0 {
				if mask&(1<<(i-1)) != 0 {
					b.WriteByte('_')
				} else {
					b.WriteByte('-')
				}
			}
			b.WriteString(w)
		}
		add(b.String())
		if mask == 1<<(len(words)-1)-1 {
			add(strings.ToLower(b.String()))
			add(strings.ToUpper(b.String()))
		}
	}
	// Mixed: alternating case, the last separator an underscore.
	mixed := []byte(name)
	for i := range mixed {
		if i%2 == 1 {
			mixed[i] = byte(strings.ToUpper(string(mixed[i]))[0])
		} else {
			mixed[i] = byte(strings.ToLower(string(mixed[i]))[0])
		}
	}
	if i := strings.LastIndexByte(name, '-'); i >= 0 {
		mixed[i] = '_'
	}
	add(string(mixed))
	return out
}

func TestSpellings(t *testing.T) {
	t.Parallel()
	got := spellings("X-Samlha-User")
	want := []string{"X-Samlha-User", "x-samlha-user", "X-SAMLHA-USER", "X_Samlha-User", "X-Samlha_User", "X_Samlha_User",
		"x_samlha_user", "X_SAMLHA_USER", "x-sAmLhA_UsEr"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("spellings(X-Samlha-User) = %q, want %q", got, want)
	}
	if n := len(spellings("X-Samlha-Jwt-Assertion")); n != 13 {
		t.Errorf("X-Samlha-Jwt-Assertion has %d spellings, want 13", n)
	}
}

// separatorSpellings are name with each choice of '-' or '_' between its
// words: the spellings an application that reads headers the CGI way takes
// for name, once case is folded.
func separatorSpellings(name string) []string {
	var out []string
	for _, s := range spellings(name) {
		if strings.ContainsRune(s, '_') && s == http.CanonicalHeaderKey(s) {
			out = append(out, s)
		}
	}
	return out
}
