// Package thirdparty runs the parts nobody on this project wrote, for the
// tests that put samlha between them: go-httpbin as the application
// (StartHTTPBin), an application that reads headers as CGI does, where
// X_Groups and X-Groups are one variable (StartPHPEcho, PHP's built-in
// server), and nginx, Caddy and HAProxy on a configuration given as text
// (ProxyConfig): a file of deploy/ with only its addresses moved (Place).
//
// Every part listens on 127.0.0.1, on a port from localproc.Port; child
// processes are localproc processes, stopped by the caller. The package
// links no "testing": any package's tests (and samllab) can use it.
package thirdparty
