// Command backend is the benchmark's upstream: a minimal HTTP server that
// answers every request with a short body and, like samlha's SP, names
// itself in X-Samlha-Instance. /healthz answers 200.
package main

import (
	"flag"
	"log"
	"net/http"
	"strconv"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:20101", "address to listen on")
	instance := flag.String("instance-id", "sp-1", "name sent in X-Samlha-Instance")
	size := flag.Int("body-bytes", 64, "response body size in bytes")
	flag.Parse()
	body := make([]byte, *size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	inst := []string{*instance}
	clen := []string{strconv.Itoa(len(body))}
	ctype := []string{"text/plain"}
	srv := &http.Server{
		Addr: *listen,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h["X-Samlha-Instance"] = inst
			h["Content-Length"] = clen
			h["Content-Type"] = ctype
			_, _ = w.Write(body)
		}),
	}
	log.Fatal(srv.ListenAndServe())
}
