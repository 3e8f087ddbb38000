package cli

import (
	"fmt"
	"net/http"
	"strings"
)

// SameSite is the one SameSite vocabulary of every samlha command, a
// flag.Value:
//
//	auto     None when the site is served over https, Lax over http
//	default  no SameSite attribute (the browser's default, Lax in Chrome)
//	lax, strict, none
//
// Case does not matter. The zero value is auto.
type SameSite string

// SameSite values.
const (
	SameSiteAuto    SameSite = "auto"
	SameSiteDefault SameSite = "default"
	SameSiteLax     SameSite = "lax"
	SameSiteStrict  SameSite = "strict"
	SameSiteNone    SameSite = "none"
)

// SameSiteHelp lists the values, for a flag's --help text.
const SameSiteHelp = "auto (None on https, Lax on http), default (no attribute), lax, strict or none"

// String implements flag.Value.
func (s *SameSite) String() string {
	if *s == "" {
		return string(SameSiteAuto)
	}
	return string(*s)
}

// Set implements flag.Value.
func (s *SameSite) Set(v string) error {
	switch m := SameSite(strings.ToLower(strings.TrimSpace(v))); m {
	case SameSiteAuto, SameSiteDefault, SameSiteLax, SameSiteStrict, SameSiteNone:
		*s = m
		return nil
	}
	return fmt.Errorf("%q: want %s", v, SameSiteHelp)
}

// Mode is the attribute for a site served over https (or not). For auto it
// is None on https and Lax otherwise; for default it is
// http.SameSiteDefaultMode, which writes no attribute.
func (s SameSite) Mode(https bool) http.SameSite {
	switch s {
	case SameSiteDefault:
		return http.SameSiteDefaultMode
	case SameSiteLax:
		return http.SameSiteLaxMode
	case SameSiteStrict:
		return http.SameSiteStrictMode
	case SameSiteNone:
		return http.SameSiteNoneMode
	}
	if https {
		return http.SameSiteNoneMode
	}
	return http.SameSiteLaxMode
}
