package login

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
)

// IDPMetadata says where the IdP's metadata comes from: exactly one of URL,
// File or Static.
type IDPMetadata struct {
	URL    *url.URL
	File   string
	Static *saml.EntityDescriptor
	// Refresh is how often URL or File is read again; default 10m. A failed
	// refresh keeps the metadata in use.
	Refresh time.Duration
	// HTTPClient fetches URL; default a client with a 10s timeout.
	HTTPClient *http.Client
	// CacheFile, with URL, keeps the last good metadata on disk (it is
	// kept in a shared store in any case); a start whose fetch fails uses
	// it at once. MaxStale is how old a kept copy may be to be used;
	// default DefaultMetadataMaxStale.
	CacheFile string
	MaxStale  time.Duration
}

// Check reports whether exactly one source is given.
func (m *IDPMetadata) Check() error {
	n := 0
	for _, set := range []bool{m.URL != nil, m.File != "", m.Static != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("give exactly one IdP metadata source: a URL or a file")
	}
	return nil
}

func (m *IDPMetadata) load(ctx context.Context) (*saml.EntityDescriptor, error) {
	switch {
	case m.Static != nil:
		return m.Static, nil
	case m.File != "":
		b, err := os.ReadFile(m.File)
		if err != nil {
			return nil, err
		}
		return samlsp.ParseMetadata(b)
	default:
		c := m.HTTPClient
		if c == nil {
			c = &http.Client{Timeout: 10 * time.Second}
		}
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		return samlsp.FetchMetadata(ctx, c, *m.URL)
	}
}

// Flag names the source as the flag that sets it, for advice on pages.
func (m *IDPMetadata) Flag() string {
	switch {
	case m == nil:
		return ""
	case m.Static != nil:
		return "the IdP metadata given to the SP"
	case m.File != "":
		return "--idp-metadata-file " + m.File
	case m.URL != nil:
		return "--idp-metadata-url " + m.URL.String()
	}
	return ""
}

func (m *IDPMetadata) source() string {
	switch {
	case m.Static != nil:
		return "static"
	case m.File != "":
		return m.File
	default:
		return m.URL.String()
	}
}

// Run loads the IdP metadata, retrying with backoff until it succeeds, and
// then refreshes it until ctx is done. The SP serves its own metadata and
// health endpoints meanwhile; logins answer idp-metadata-unavailable until
// the first load. Run returns nil when ctx is done.
func (e *Engine) Run(ctx context.Context) error {
	src := e.cfg.IDP
	if err := src.Check(); err != nil {
		return err
	}
	refresh := src.Refresh
	if refresh <= 0 {
		refresh = 10 * time.Minute
	}
	var current []byte
	if md := e.loadLastGood(ctx); md != nil {
		if err := e.setIDPMetadata(md); err != nil {
			e.log.Warn("last good IdP metadata not used", "err", err)
		} else {
			current, _ = xml.Marshal(md)
		}
	}
	load := func() (struct{}, error) {
		md, err := src.load(ctx)
		if err == nil {
			b, _ := xml.Marshal(md)
			// Kept before it is put in use: a replica that is ready has
			// left a copy for the next start.
			e.saveLastGood(ctx, b)
			if !bytes.Equal(b, current) {
				if err = e.setIDPMetadata(md); err == nil {
					current = b
					e.log.Info("IdP metadata loaded", "source", src.source(), "entity_id", md.EntityID)
				}
			}
		}
		if err != nil {
			e.m.idpRefreshErrs.Inc()
		}
		return struct{}{}, err
	}
	// The first load: 250ms doubling to 10s, with jitter, until it works
	// or ctx is done (the only way Retry can fail without a time limit).
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.Multiplier, b.MaxInterval = 250*time.Millisecond, 2, 10*time.Second
	if _, err := backoff.Retry(ctx, load, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, wait time.Duration) {
			msg := "IdP metadata not available yet; retrying"
			if current != nil {
				msg = "IdP metadata URL not answering; serving with the last good copy and retrying"
			}
			e.log.Warn(msg, "source", src.source(), "err", err, "retry_in", wait.Round(time.Millisecond))
		})); err != nil {
		return nil
	}
	if src.Static != nil {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := load(); err != nil {
			e.log.Warn("IdP metadata refresh failed; keeping the metadata in use", "source", src.source(), "err", err)
		}
	}
}

// LoadIDPMetadata loads the IdP metadata once, for callers that want to
// fail fast instead of running Run in the background.
func (e *Engine) LoadIDPMetadata(ctx context.Context) error {
	md, err := e.cfg.IDP.load(ctx)
	if err != nil {
		return fmt.Errorf("load IdP metadata from %s: %w", e.cfg.IDP.source(), err)
	}
	return e.setIDPMetadata(md)
}
