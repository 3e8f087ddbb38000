package sp_test

import (
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/samlha/samlha/sp"
)

// BenchmarkGatewayAuthenticated is one authenticated request through the
// gateway (memory store) to a real upstream, over loopback HTTP: with the
// session cache (the default) and without it (every request opens the
// sealed record).
//
//	go test -run '^$' -bench GatewayAuthenticated -cpuprofile /tmp/gw.prof ./sp
func BenchmarkGatewayAuthenticated(b *testing.B) {
	for _, tc := range []struct {
		name  string
		cache time.Duration
	}{{"memory", 0}, {"memory-nocache", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			env := startGateway(b, 1, nil, nil, func(c *sp.Config) {
				c.SessionCacheTTL = tc.cache
				c.Logger = slog.New(slog.DiscardHandler)
			})
			br := newBrowser()
			res := env.top.login(b, br, "alice")
			if !res.OK {
				b.Fatal(describe(res))
			}
			req, _ := http.NewRequest(http.MethodGet, env.top.Replicas[0].URL+"/bench", nil)
			for _, c := range br.Cookies(mustURL(env.top.ProxyURL)) {
				req.AddCookie(c)
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ResetTimer()
			for b.Loop() {
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
