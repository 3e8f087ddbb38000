package devidp

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/crewjam/saml"
)

// maxMetadataSize bounds an SP metadata document.
const maxMetadataSize = 1 << 20

// RegisterSPMetadata registers the SP whose metadata document is xmlDoc
// under id (any name without '/'; registering the same id again replaces
// it). It goes through samlidp's own PUT /services/{id} handler, in
// process.
func (s *Server) RegisterSPMetadata(id string, xmlDoc []byte) error {
	if id == "" || strings.ContainsAny(id, "/?#") {
		return fmt.Errorf("SP id %q: want a non-empty name without '/', '?' or '#'", id)
	}
	entityID, err := spEntityID(xmlDoc)
	if err != nil {
		return fmt.Errorf("SP %s: metadata: %w", id, err)
	}
	rec := s.inProcess(http.MethodPut, "/services/"+url.PathEscape(id), xmlDoc)
	if rec.code != http.StatusNoContent {
		return fmt.Errorf("SP %s (entity %s): samlidp refused the metadata: %d %s", id, entityID, rec.code, strings.TrimSpace(rec.body.String()))
	}
	s.countRegistered()
	s.log.Info("registered SP", "id", id, "entity_id", entityID)
	return nil
}

// inProcess serves one request to samlidp's own handler without a network
// round trip, marked as coming from this process (see inProcess{}).
func (s *Server) inProcess(method, path string, body []byte) *memWriter {
	ctx := context.WithValue(context.Background(), inProcess{}, true)
	req, err := http.NewRequestWithContext(ctx, method, path, bytes.NewReader(body))
	rec := &memWriter{header: http.Header{}, code: http.StatusOK}
	if err != nil {
		rec.code = http.StatusInternalServerError
		rec.body.WriteString(err.Error())
		return rec
	}
	req.RemoteAddr = "127.0.0.1:0"
	s.idp.ServeHTTP(rec, req)
	return rec
}

// memWriter is the http.ResponseWriter of an in-process request.
type memWriter struct {
	header      http.Header
	code        int
	wroteHeader bool
	body        bytes.Buffer
}

func (w *memWriter) Header() http.Header { return w.header }
func (w *memWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
	}
}
func (w *memWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// countRegistered updates the gauge of registered SPs.
func (s *Server) countRegistered() {
	rec := s.inProcess(http.MethodGet, "/services/", nil)
	var list struct {
		Services []string `json:"services"`
	}
	if err := json.Unmarshal(rec.body.Bytes(), &list); err == nil {
		s.metrics.spsRegistered.Set(float64(len(list.Services)))
	}
}

// spEntityID returns the entity ID of an SP metadata document: an
// EntityDescriptor with an SPSSODescriptor (or an EntitiesDescriptor
// holding one, which samlidp also takes).
func spEntityID(doc []byte) (string, error) {
	var ed saml.EntityDescriptor
	err := xml.Unmarshal(doc, &ed)
	if err == nil {
		if len(ed.SPSSODescriptors) == 0 {
			return "", fmt.Errorf("entity %s has no SPSSODescriptor", ed.EntityID)
		}
		return ed.EntityID, nil
	}
	var eds saml.EntitiesDescriptor
	if xml.Unmarshal(doc, &eds) == nil {
		for _, e := range eds.EntityDescriptors {
			if len(e.SPSSODescriptors) > 0 {
				return e.EntityID, nil
			}
		}
		return "", errors.New("no entity with an SPSSODescriptor")
	}
	return "", err
}

// SPID is the id under which RegisterSPs registers the SP whose metadata
// is at metadataURL: its host, port and path, such as
// "127.0.0.1:8081-saml-metadata".
func SPID(metadataURL string) string {
	u, err := url.Parse(metadataURL)
	if err != nil {
		return strings.NewReplacer("/", "-", "?", "-", "#", "-").Replace(metadataURL)
	}
	id := u.Host + strings.ReplaceAll(u.EscapedPath(), "/", "-")
	return strings.NewReplacer("?", "-", "#", "-", "%", "-").Replace(strings.TrimSuffix(id, "-"))
}

// RegisterSPs fetches the metadata of every SP in Config.SPMetadataURLs and
// registers it (under SPID(url)), retrying each with exponential backoff
// (Config.RetryMin to RetryMax, with 20% jitter either side) until it
// answers with metadata samlidp accepts: the SPs may start after the IdP. It returns nil once all
// are registered, or, when ctx ends first, an error naming each SP that was
// not, with its last error. The server turns ready (/readyz) when all are.
func (s *Server) RegisterSPs(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(s.cfg.SPMetadataURLs))
	for i, u := range s.cfg.SPMetadataURLs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.registerFromURL(ctx, u)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// registerFromURL fetches and registers one SP until it succeeds or ctx
// ends.
func (s *Server) registerFromURL(ctx context.Context, metadataURL string) error {
	start := time.Now()
	attempt := 0
	var last error
	try := func() (struct{}, error) {
		attempt++
		doc, err := s.fetchMetadata(ctx, metadataURL)
		if err == nil {
			err = s.RegisterSPMetadata(SPID(metadataURL), doc)
		}
		if err != nil {
			s.metrics.spFetches.WithLabelValues("error").Inc()
			s.mu.Lock()
			s.pending[metadataURL] = err
			s.mu.Unlock()
			last = err
		}
		return struct{}{}, err
	}
	// RetryMin doubling to RetryMax, each wait within 20% either side;
	// no limit but ctx.
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.Multiplier, b.MaxInterval, b.RandomizationFactor = s.cfg.RetryMin, 2, s.cfg.RetryMax, 0.2
	_, err := backoff.Retry(ctx, try, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, wait time.Duration) {
			// The first failure and then one in ten are worth an info
			// line; the SPs commonly start a little after the IdP.
			level := s.log.Debug
			if attempt == 1 || attempt%10 == 0 {
				level = s.log.Info
			}
			level("SP metadata not available yet, retrying", "url", metadataURL, "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
		}))
	if err != nil {
		// Retry without a time limit stops only when ctx ends; the
		// error worth reporting is the SP's, not the context's.
		if last == nil {
			last = err
		}
		return fmt.Errorf("SP metadata %s: not registered after %d attempts in %s: %w", metadataURL, attempt, time.Since(start).Round(time.Millisecond), last)
	}
	s.metrics.spFetches.WithLabelValues("registered").Inc()
	s.mu.Lock()
	delete(s.pending, metadataURL)
	ready := len(s.pending) == 0
	s.mu.Unlock()
	s.log.Info("SP metadata fetched", "url", metadataURL, "attempts", attempt, "waited", time.Since(start).Round(time.Millisecond))
	if ready {
		s.log.Info("every configured SP is registered: ready")
	}
	return nil
}

// fetchMetadata GETs an SP's metadata document.
func (s *Server) fetchMetadata(ctx context.Context, metadataURL string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metadataURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/samlmetadata+xml, application/xml, text/xml")
	resp, err := s.cfg.MetadataClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataSize+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	if len(body) > maxMetadataSize {
		return nil, fmt.Errorf("metadata larger than %d bytes", maxMetadataSize)
	}
	return body, nil
}
