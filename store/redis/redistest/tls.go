package redistest

// WithTLS starts the server with TLS only (no plain port), under a
// certificate for 127.0.0.1 and localhost from a throwaway CA. URL is then
// a rediss:// URL that names the CA file; CAFile returns its path.
func WithTLS() Option {
	return func(c *config) { c.tls = true }
}

// CAFile returns the PEM file of the CA that signed a WithTLS server's
// certificate, or "" for a server without TLS.
func (s *Server) CAFile() string {
	if !s.tls {
		return ""
	}
	return s.ca.CAFile
}

// WithTLSLike starts the server with TLS only, under a certificate from
// the CA of other (a WithTLS server), and replicating over TLS: a replica
// of other, or another node of its set.
func WithTLSLike(other *Server) Option {
	return func(c *config) {
		c.tls, c.ca = true, other.ca
		c.args = append(c.args, "--tls-replication", "yes")
	}
}
