package login

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"

	"github.com/samlha/samlha/store"
)

// The last good IdP metadata: every replica that fetched the metadata from
// its URL keeps a copy, in the shared store (Redis) and, with CacheFile, on
// disk; a replica that starts while the IdP's metadata endpoint is slow or
// down loads that copy at once and is ready, and fetches the URL beside it.
// A copy is used only for the same URL and while it is younger than
// MaxStale and inside the metadata's own validUntil: a stale copy could
// hold a signing key the IdP has retired.

// DefaultMetadataMaxStale is the default of IDPMetadata.MaxStale.
const DefaultMetadataMaxStale = 24 * time.Hour

// keyIDPMetadata prefixes the store key of the last good copy; the rest is
// a hash of the URL.
const keyIDPMetadata = "idpmeta:"

// lastGoodMagic begins a copy: the format, then the time of the fetch in
// Unix seconds and the URL, one per line, then the metadata.
const lastGoodMagic = "samlha-idp-metadata 1\n"

// maxLastGood bounds a copy read back (a file an operator pointed at the
// wrong place, a corrupted record): IdP metadata is kilobytes, federation
// aggregates megabytes.
const maxLastGood = 16 << 20

func (m *IDPMetadata) maxStale() time.Duration {
	if m.MaxStale > 0 {
		return m.MaxStale
	}
	return DefaultMetadataMaxStale
}

func (m *IDPMetadata) storeKey() string {
	h := sha256.Sum256([]byte(m.URL.String()))
	return keyIDPMetadata + hex.EncodeToString(h[:16])
}

func encodeLastGood(source string, fetched time.Time, md []byte) []byte {
	var b bytes.Buffer
	b.WriteString(lastGoodMagic)
	b.WriteString(strconv.FormatInt(fetched.Unix(), 10))
	b.WriteByte('\n')
	b.WriteString(source)
	b.WriteByte('\n')
	b.Write(md)
	return b.Bytes()
}

// decodeLastGood parses a copy and checks that it may be used at now for
// source: the same URL, fetched within maxStale, not past validUntil.
func decodeLastGood(b []byte, source string, now time.Time, maxStale time.Duration) (*saml.EntityDescriptor, time.Time, error) {
	if len(b) > maxLastGood {
		return nil, time.Time{}, fmt.Errorf("copy of %d bytes, more than %d", len(b), maxLastGood)
	}
	rest, ok := bytes.CutPrefix(b, []byte(lastGoodMagic))
	if !ok {
		return nil, time.Time{}, errors.New("not a samlha copy of IdP metadata")
	}
	ts, rest, ok1 := bytes.Cut(rest, []byte{'\n'})
	src, rest, ok2 := bytes.Cut(rest, []byte{'\n'})
	sec, err := strconv.ParseInt(string(ts), 10, 64)
	if !ok1 || !ok2 || err != nil {
		return nil, time.Time{}, errors.New("copy header is damaged")
	}
	fetched := time.Unix(sec, 0)
	switch age := now.Sub(fetched); {
	case string(src) != source:
		return nil, fetched, fmt.Errorf("copy is of %s, not of %s", src, source)
	case age > maxStale:
		return nil, fetched, fmt.Errorf("copy fetched %v ago, more than the %v allowed", age.Round(time.Second), maxStale)
	case age < -time.Minute:
		return nil, fetched, errors.New("copy fetched in the future")
	}
	md, err := samlsp.ParseMetadata(rest)
	if err != nil {
		return nil, fetched, fmt.Errorf("copy does not parse: %w", err)
	}
	if !md.ValidUntil.IsZero() && !now.Before(md.ValidUntil) {
		return nil, fetched, fmt.Errorf("copy expired at its validUntil %v", md.ValidUntil)
	}
	return md, fetched, nil
}

// loadLastGood returns the freshest usable copy (store or file), or nil;
// what it skips, and why, is logged.
func (e *Engine) loadLastGood(ctx context.Context) *saml.EntityDescriptor {
	src := e.cfg.IDP
	if src.URL == nil {
		return nil
	}
	var best *saml.EntityDescriptor
	var bestAt time.Time
	try := func(where string, b []byte, err error) {
		switch {
		case errors.Is(err, store.ErrNotFound) || errors.Is(err, os.ErrNotExist):
			return
		case err != nil:
			e.log.Warn("cannot read the last good IdP metadata", "from", where, "err", err)
			return
		}
		md, at, err := decodeLastGood(b, src.URL.String(), e.cfg.Now(), src.maxStale())
		if err != nil {
			e.log.Warn("last good IdP metadata not used", "from", where, "err", err)
			return
		}
		if best == nil || at.After(bestAt) {
			best, bestAt = md, at
		}
	}
	if e.sharedStore() {
		ctx, cancel := context.WithTimeout(ctx, e.cfg.StoreTimeout)
		b, err := e.cfg.Store.Get(ctx, src.storeKey())
		cancel()
		try("store", b, err)
	}
	if src.CacheFile != "" {
		b, err := readBounded(src.CacheFile, maxLastGood)
		try(src.CacheFile, b, err)
	}
	if best != nil {
		e.log.Info("using the last good IdP metadata until the URL answers", "fetched", bestAt.UTC().Format(time.RFC3339), "entity_id", best.EntityID)
	}
	return best
}

// saveLastGood keeps md, just fetched from the URL, as the last good copy.
// A failure is logged: the copy is a help at the next start, not a need.
func (e *Engine) saveLastGood(ctx context.Context, md []byte) {
	src := e.cfg.IDP
	if src.URL == nil {
		return
	}
	b := encodeLastGood(src.URL.String(), e.cfg.Now(), md)
	if e.sharedStore() {
		ctx, cancel := context.WithTimeout(ctx, e.cfg.StoreTimeout)
		err := e.cfg.Store.Put(ctx, src.storeKey(), b, src.maxStale())
		cancel()
		if err != nil {
			e.storeError("put-idp-metadata", err)
		}
	}
	if src.CacheFile != "" {
		if err := writeAtomic(src.CacheFile, b); err != nil {
			e.log.Warn("cannot keep the last good IdP metadata on disk", "file", src.CacheFile, "err", err)
		}
	}
}

func (e *Engine) sharedStore() bool {
	return e.cfg.Store != nil && e.Shared()
}

func readBounded(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", name, st.Size(), limit)
	}
	var b bytes.Buffer
	_, err = b.ReadFrom(f)
	return b.Bytes(), err
}

// writeAtomic writes b to name through a temporary file and a rename, so
// that a reader (another start) never sees half a copy.
func writeAtomic(name string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
