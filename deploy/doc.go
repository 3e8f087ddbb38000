// Package deploy holds samlha's deployment files and the tests that keep them
// honest: the Dockerfile, the docker-compose.yml at the repository root, the
// Kubernetes manifests under k8s/ (kustomize) and the reference HAProxy,
// nginx, Caddy, Traefik and AWS ALB configurations. See README.md in this directory.
//
// The package's only code is NginxForwardAuth (the nginx forward-auth
// config, embedded for samllab and sp/walk); its tests load the compose file with
// compose-spec/compose-go, render the kustomize overlays with kustomize's
// krusty, check every flag and environment variable they pass against the
// --help of the binary that receives it, and run haproxy -c, nginx -t and
// caddy validate on the reference configurations where those are installed,
// and run the reference configs end to end with real third-party parts
// (package deploy/thirdparty: go-httpbin, PHP's built-in server, nginx,
// Caddy and HAProxy).
package deploy
