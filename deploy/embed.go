package deploy

import _ "embed"

// NginxForwardAuth is nginx-forward-auth.conf, the nginx auth_request
// reference config, as this checkout has it: samllab runs it in its
// gateway-forward-auth scenario with only the addresses rewritten, so the
// lab measures the file people copy, and sp/walk's Chromium walks
// forward-auth mode through it.
//
//go:embed nginx-forward-auth.conf
var NginxForwardAuth string
