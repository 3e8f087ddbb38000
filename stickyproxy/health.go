package stickyproxy

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// Run performs active health checks of every target, every
// Config.HealthInterval, until ctx is done. With an interval of 0 it
// returns at once (passive checks still apply).
func (p *Proxy) Run(ctx context.Context) {
	if p.cfg.HealthInterval <= 0 {
		return
	}
	client := p.healthClient()
	defer client.CloseIdleConnections()
	tick := time.NewTicker(p.cfg.HealthInterval)
	defer tick.Stop()
	for {
		p.checkAll(ctx, client)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// CheckNow runs one round of active health checks, all targets at once, and
// returns when it is done. Tests and the admin API use it; Run calls it on
// every tick.
func (p *Proxy) CheckNow(ctx context.Context) {
	client := p.healthClient()
	defer client.CloseIdleConnections()
	p.checkAll(ctx, client)
}

func (p *Proxy) healthClient() *http.Client {
	return &http.Client{
		Timeout: p.cfg.HealthTimeout,
		Transport: &http.Transport{
			DialContext:         p.transport.DialContext,
			MaxIdleConnsPerHost: 1,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (p *Proxy) checkAll(ctx context.Context, client *http.Client) {
	var wg sync.WaitGroup
	for _, t := range p.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, why := p.check(ctx, client, t)
			if ctx.Err() != nil {
				return
			}
			p.checked(t, ok, why)
		}()
	}
	wg.Wait()
}

// check asks t's health path: 2xx and 3xx are healthy (as HAProxy's
// httpchk).
func (p *Proxy) check(ctx context.Context, client *http.Client, t *target) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url.String()+p.cfg.HealthPath, nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("User-Agent", "stickyproxy-health")
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return false, "status " + resp.Status
	}
	return true, ""
}

// checked applies one check result with the rise/fall thresholds.
func (p *Proxy) checked(t *target, ok bool, why string) {
	result := "ok"
	if !ok {
		result = "fail"
	}
	p.m.healthChecks.WithLabelValues(t.name, result).Inc()
	p.checkMu.Lock()
	if ok {
		t.fall = 0
		t.rise++
	} else {
		t.rise = 0
		t.fall++
	}
	up := ok && !t.healthy.Load() && t.rise >= p.cfg.HealthRise
	down := !ok && t.healthy.Load() && t.fall >= p.cfg.HealthFall
	p.checkMu.Unlock()
	switch {
	case up:
		p.markUp(t, "active")
	case down:
		p.markDown(t, "active", why)
	}
}
