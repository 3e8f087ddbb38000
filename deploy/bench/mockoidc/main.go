// Command mockoidc serves github.com/oauth2-proxy/mockoidc, a mock OpenID
// Connect provider that logs in a fixed user without a form, as the
// identity provider of oauth2-proxy in deploy/bench/gateway.sh. It prints
// the issuer, client ID and client secret as shell assignments on stdout,
// then serves until SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/oauth2-proxy/mockoidc"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	ttl := flag.Duration("access-ttl", time.Hour, "lifetime of the tokens it issues (longer than a benchmark run, so no refresh)")
	flag.Parse()
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		log.Fatal(err)
	}
	m.AccessTTL, m.RefreshTTL = *ttl, *ttl
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("OIDC_ISSUER=%s\nOIDC_CLIENT_ID=%s\nOIDC_CLIENT_SECRET=%s\n", m.Issuer(), m.ClientID, m.ClientSecret)
	os.Stdout.Sync()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	_ = m.Shutdown()
}
