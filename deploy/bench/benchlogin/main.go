// Command benchlogin logs a scripted browser in through a protecting proxy
// and prints the Cookie header that carries its session, for wrk
// (deploy/bench/gateway.sh). With --user it completes a SAML login at the
// dev IdP's form (samlsp); without, it follows redirects only (oauth2-proxy
// with mockoidc, which logs in without a form). It then checks that the
// cookie reaches the upstream: a GET with it must answer 200 without a
// redirect.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/samlha/samlha/sp/sptest"
)

func main() {
	target := flag.String("url", "", "a protected URL of the proxy")
	user := flag.String("user", "", "dev IdP user for a SAML login (password: <user>-password); empty: follow redirects only")
	flag.Parse()
	if err := run(*target, *user); err != nil {
		fmt.Fprintln(os.Stderr, "benchlogin:", err)
		os.Exit(1)
	}
}

func run(target, user string) error {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--url %q is not an absolute URL", target)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := sptest.NewBrowser(sptest.Options{RequestTimeout: 20 * time.Second, SuccessPath: u.Path})
	if user != "" {
		_ = b.Login(ctx, target, user, user+"-password") // the upstream does not name the user; checked below
	} else if _, err := b.Get(ctx, target); err != nil {
		return err
	}
	var parts []string
	for _, c := range b.Cookies(u) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	if len(parts) == 0 {
		return fmt.Errorf("no cookie for %s after the login", target)
	}
	cookie := strings.Join(parts, "; ")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	req.Header.Set("Cookie", cookie)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s with the session cookie answered %d, want 200", target, resp.StatusCode)
	}
	fmt.Println(cookie)
	return nil
}
