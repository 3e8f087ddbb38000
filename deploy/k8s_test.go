package deploy

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

const overlaysDir = "k8s/overlays"

// Just enough of the Kubernetes objects for the checks; the rendered YAML is
// decoded through JSON into these.
type (
	k8sMeta struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	}
	k8sObject struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   k8sMeta           `json:"metadata"`
		Spec       json.RawMessage   `json:"spec"`
		Data       map[string]string `json:"data"`
	}
	k8sDeployment struct {
		Replicas *int `json:"replicas"`
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Template struct {
			Metadata k8sMeta `json:"metadata"`
			Spec     k8sPod  `json:"spec"`
		} `json:"template"`
	}
	k8sPod struct {
		SecurityContext *struct {
			RunAsNonRoot *bool  `json:"runAsNonRoot"`
			RunAsUser    *int64 `json:"runAsUser"`
		} `json:"securityContext"`
		Containers []k8sContainer `json:"containers"`
		Volumes    []struct {
			Name   string `json:"name"`
			Secret *struct {
				SecretName string `json:"secretName"`
			} `json:"secret"`
		} `json:"volumes"`
	}
	k8sContainer struct {
		Name    string   `json:"name"`
		Image   string   `json:"image"`
		Command []string `json:"command"`
		Args    []string `json:"args"`
		Ports   []struct {
			Name          string `json:"name"`
			ContainerPort int    `json:"containerPort"`
		} `json:"ports"`
		Env []struct {
			Name      string `json:"name"`
			Value     string `json:"value"`
			ValueFrom *struct {
				FieldRef *struct {
					FieldPath string `json:"fieldPath"`
				} `json:"fieldRef"`
			} `json:"valueFrom"`
		} `json:"env"`
		EnvFrom []struct {
			ConfigMapRef *struct {
				Name string `json:"name"`
			} `json:"configMapRef"`
		} `json:"envFrom"`
		ReadinessProbe *k8sProbe `json:"readinessProbe"`
		LivenessProbe  *k8sProbe `json:"livenessProbe"`
		Resources      struct {
			Requests map[string]string `json:"requests"`
			Limits   map[string]string `json:"limits"`
		} `json:"resources"`
		SecurityContext *struct {
			ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
			AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
			Capabilities             *struct {
				Drop []string `json:"drop"`
			} `json:"capabilities"`
		} `json:"securityContext"`
		VolumeMounts []struct {
			Name      string `json:"name"`
			MountPath string `json:"mountPath"`
			ReadOnly  bool   `json:"readOnly"`
		} `json:"volumeMounts"`
	}
	k8sProbe struct {
		HTTPGet *struct {
			Path string `json:"path"`
			Port any    `json:"port"`
		} `json:"httpGet"`
	}
	k8sService struct {
		Selector map[string]string `json:"selector"`
		Ports    []struct {
			Name       string `json:"name"`
			Port       int    `json:"port"`
			TargetPort any    `json:"targetPort"`
		} `json:"ports"`
	}
	k8sIngress struct {
		IngressClassName string `json:"ingressClassName"`
		TLS              []struct {
			Hosts []string `json:"hosts"`
		} `json:"tls"`
		Rules []struct {
			Host string `json:"host"`
			HTTP struct {
				Paths []struct {
					Path    string `json:"path"`
					Backend struct {
						Service struct {
							Name string `json:"name"`
							Port struct {
								Name   string `json:"name"`
								Number int    `json:"number"`
							} `json:"port"`
						} `json:"service"`
					} `json:"backend"`
				} `json:"paths"`
			} `json:"http"`
		} `json:"rules"`
	}
)

// rendered is one overlay's output, by kind and name.
type rendered struct {
	objs []k8sObject
}

func (r *rendered) get(kind, name string) (k8sObject, bool) {
	for _, o := range r.objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o, true
		}
	}
	return k8sObject{}, false
}

func (r *rendered) kinds() []string {
	var out []string
	for _, o := range r.objs {
		out = append(out, o.Kind+"/"+o.Metadata.Name)
	}
	sort.Strings(out)
	return out
}

func renderOverlay(t *testing.T, dir string) *rendered {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out := &rendered{}
	for _, res := range m.Resources() {
		mm, err := res.Map()
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(mm)
		if err != nil {
			t.Fatal(err)
		}
		var o k8sObject
		if err := json.Unmarshal(b, &o); err != nil {
			t.Fatalf("%s/%s: %v", res.GetKind(), res.GetName(), err)
		}
		out.objs = append(out.objs, o)
	}
	return out
}

func decodeSpec[T any](t *testing.T, o k8sObject) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(o.Spec, &v); err != nil {
		t.Fatalf("%s/%s spec: %v", o.Kind, o.Metadata.Name, err)
	}
	return v
}

// overlayWant is what each overlay must produce.
type overlayWant struct {
	store        string // SAMLHA_STORE of samlsp
	redis        bool   // Redis Deployment and Service present
	ingressClass string
	// annotations the Ingress must carry, with exact values, or (value
	// starting with "~") containing each comma-separated part.
	annotations map[string]string
	// annotation name prefixes the Ingress must not carry (no affinity).
	noAnnotations []string
}

var overlays = map[string]overlayWant{
	"affinity": {store: "memory", ingressClass: "nginx", annotations: map[string]string{
		"nginx.ingress.kubernetes.io/affinity":                "cookie",
		"nginx.ingress.kubernetes.io/session-cookie-samesite": "None",
		"nginx.ingress.kubernetes.io/session-cookie-secure":   "true",
	}},
	"affinity-alb": {store: "memory", ingressClass: "alb", annotations: map[string]string{
		"alb.ingress.kubernetes.io/target-type":             "ip",
		"alb.ingress.kubernetes.io/target-group-attributes": "~stickiness.enabled=true,stickiness.type=lb_cookie,stickiness.lb_cookie.duration_seconds=",
		"alb.ingress.kubernetes.io/healthcheck-path":        "/readyz",
	}},
	"forward-auth": {store: "redis", redis: true, ingressClass: "nginx", noAnnotations: []string{
		"nginx.ingress.kubernetes.io/affinity", "alb.ingress.kubernetes.io/target-group-attributes",
	}},
	"shared": {store: "redis", redis: true, ingressClass: "nginx", noAnnotations: []string{
		"nginx.ingress.kubernetes.io/affinity", "alb.ingress.kubernetes.io/target-group-attributes",
	}},
}

func TestKustomizeOverlays(t *testing.T) {
	t.Parallel()
	entries, err := os.ReadDir(overlaysDir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		name := e.Name()
		seen[name] = true
		want, ok := overlays[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if !ok {
				t.Fatalf("overlay %s has no expectations in this test; add them to overlays", name)
			}
			checkOverlay(t, renderOverlay(t, filepath.Join(overlaysDir, name)), want)
		})
	}
	for name := range overlays {
		if !seen[name] {
			t.Errorf("overlay %s is missing from %s", name, overlaysDir)
		}
	}
}

func checkOverlay(t *testing.T, r *rendered, want overlayWant) {
	t.Helper()
	d := loadDockerfile(t)
	for _, o := range r.objs {
		if o.Kind != "Namespace" && o.Metadata.Namespace == "" {
			t.Errorf("%s/%s has no namespace: set one in the overlay", o.Kind, o.Metadata.Name)
		}
	}
	need := []string{"Deployment/samlsp", "Service/samlsp", "PodDisruptionBudget/samlsp", "Deployment/devidp", "Service/devidp", "Ingress/samlha"}
	for _, kn := range need {
		kind, name, _ := strings.Cut(kn, "/")
		if _, ok := r.get(kind, name); !ok {
			t.Errorf("no %s in the output (%v)", kn, r.kinds())
		}
	}
	_, hasRedisD := r.get("Deployment", "redis")
	_, hasRedisS := r.get("Service", "redis")
	if hasRedisD != want.redis || hasRedisS != want.redis {
		t.Errorf("Redis Deployment %v, Service %v; want both %v", hasRedisD, hasRedisS, want.redis)
	}

	sp, ok := r.get("Deployment", "samlsp")
	if !ok {
		t.FailNow()
	}
	spEnv := checkWorkload(t, r, d, sp, "/readyz")
	if dep := decodeSpec[k8sDeployment](t, sp); dep.Replicas == nil || *dep.Replicas < 2 {
		got := "unset (1)"
		if dep.Replicas != nil {
			got = strconv.Itoa(*dep.Replicas)
		}
		t.Errorf("samlsp replicas = %s, want 2 or more", got)
	}
	if spEnv["SAMLHA_STORE"] != want.store {
		t.Errorf("samlsp SAMLHA_STORE = %q, want %q", spEnv["SAMLHA_STORE"], want.store)
	}
	if want.store == "redis" {
		checkServiceURL(t, r, "SAMLHA_STORE_URL", spEnv["SAMLHA_STORE_URL"], "redis")
	}
	if spEnv["SAMLHA_INSTANCE_ID"] != "fieldRef:metadata.name" {
		t.Errorf("samlsp SAMLHA_INSTANCE_ID = %q, want the pod name (valueFrom.fieldRef metadata.name)", spEnv["SAMLHA_INSTANCE_ID"])
	}
	checkServiceURL(t, r, "SAMLHA_IDP_METADATA_URL", spEnv["SAMLHA_IDP_METADATA_URL"], "devidp")
	checkSecretFiles(t, r, sp, spEnv["SAMLHA_SP_KEY"], spEnv["SAMLHA_SP_CERT"])

	idp, ok := r.get("Deployment", "devidp")
	if !ok {
		t.FailNow()
	}
	// devidp's /readyz waits for the SP metadata, which the samlsp Service
	// serves only once the SPs are ready, which needs the IdP's metadata
	// through the devidp Service: its readiness must be /healthz.
	idpEnv := checkWorkload(t, r, d, idp, "/healthz")
	for _, md := range strings.Split(idpEnv["SAMLHA_IDP_SP_METADATA"], ",") {
		checkServiceURL(t, r, "SAMLHA_IDP_SP_METADATA", md, "samlsp")
	}

	// The public side: root URL and IdP public URL are Ingress hosts, routed
	// to the right Services, over TLS.
	ing, ok := r.get("Ingress", "samlha")
	if !ok {
		t.FailNow()
	}
	spec := decodeSpec[k8sIngress](t, ing)
	if spec.IngressClassName != want.ingressClass {
		t.Errorf("Ingress class %q, want %q", spec.IngressClassName, want.ingressClass)
	}
	routes := map[string]string{}
	for _, rule := range spec.Rules {
		for _, p := range rule.HTTP.Paths {
			b := p.Backend.Service
			routes[rule.Host] = b.Name
			port := b.Port.Name
			if port == "" {
				port = strconv.Itoa(b.Port.Number)
			}
			if _, ok := servicePort(t, r, b.Name, port); !ok {
				t.Errorf("Ingress host %s routes to %s:%s, which is no Service port", rule.Host, b.Name, port)
			}
		}
	}
	var tlsHosts []string
	for _, tl := range spec.TLS {
		tlsHosts = append(tlsHosts, tl.Hosts...)
	}
	for env, svc := range map[string]string{"SAMLHA_ROOT_URL": "samlsp", "SAMLHA_IDP_PUBLIC_URL": "devidp"} {
		v := spEnv[env]
		if svc == "devidp" {
			v = idpEnv[env]
		}
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			t.Errorf("%s %q is not an absolute URL", env, v)
			continue
		}
		if routes[u.Hostname()] != svc {
			t.Errorf("%s %s: the Ingress routes host %s to %q, want %s", env, v, u.Hostname(), routes[u.Hostname()], svc)
		}
		if u.Scheme != "https" || !slices.Contains(tlsHosts, u.Hostname()) {
			t.Errorf("%s %s: serve it over https (Ingress tls hosts %v): the affinity cookie needs SameSite=None; Secure", env, v, tlsHosts)
		}
	}
	for k, v := range want.annotations {
		got, ok := ing.Metadata.Annotations[k]
		switch {
		case !ok:
			t.Errorf("Ingress lacks annotation %s", k)
		case strings.HasPrefix(v, "~"):
			for _, part := range strings.Split(v[1:], ",") {
				if !strings.Contains(got, part) {
					t.Errorf("Ingress annotation %s = %q lacks %q", k, got, part)
				}
			}
		case got != v:
			t.Errorf("Ingress annotation %s = %q, want %q", k, got, v)
		}
	}
	for _, k := range want.noAnnotations {
		if v, ok := ing.Metadata.Annotations[k]; ok {
			t.Errorf("Ingress has %s = %q; this overlay needs no affinity", k, v)
		}
	}
}

// checkWorkload checks a Deployment's pod: the program and its environment
// against its --help, probes, resources, security context, and the Service
// in front of it. It returns the container's effective environment (a
// fieldRef appears as "fieldRef:<path>").
func checkWorkload(t *testing.T, r *rendered, d *dockerfile, o k8sObject, readiness string) map[string]string {
	t.Helper()
	name := o.Metadata.Name
	dep := decodeSpec[k8sDeployment](t, o)
	pod := dep.Template.Spec
	for k, v := range dep.Selector.MatchLabels {
		if dep.Template.Metadata.Labels[k] != v {
			t.Errorf("%s: selector %s=%s does not match the pod labels %v", name, k, v, dep.Template.Metadata.Labels)
		}
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot ||
		pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser == 0 {
		t.Errorf("%s: pod securityContext must set runAsNonRoot: true and a non-zero runAsUser", name)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: want one container, got %d", name, len(pod.Containers))
	}
	c := pod.Containers[0]
	if !strings.HasPrefix(c.Image, "samlha:") && !strings.Contains(c.Image, "/samlha:") {
		t.Errorf("%s: image %q is not the samlha image", name, c.Image)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: container securityContext must be readOnlyRootFilesystem, no privilege escalation, drop ALL", name)
	}
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("%s: set cpu and memory requests and a memory limit (got %+v)", name, c.Resources)
	}

	// The program and its environment.
	if len(c.Command) == 0 {
		t.Fatalf("%s: no command: the image's entrypoint is samlsp; name the program", name)
	}
	rt := d.Stages[len(d.Stages)-1]
	bin := rt.Installed[c.Command[0]]
	pkg, ok := d.pkgOf(bin)
	if !ok {
		t.Fatalf("%s: command %s is not a program of the image (%v)", name, c.Command[0], rt.Installed)
	}
	h := bins.helpFor(t, bin, pkg, "")
	if _, problems := parseArgs(h, append(c.Command[1:], c.Args...)); len(problems) > 0 {
		t.Errorf("%s: %s", name, strings.Join(problems, "; "))
	}
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			continue
		}
		cm, ok := r.get("ConfigMap", ef.ConfigMapRef.Name)
		if !ok {
			t.Errorf("%s: envFrom ConfigMap %s is not in the output", name, ef.ConfigMapRef.Name)
			continue
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[e.Name] = "fieldRef:" + e.ValueFrom.FieldRef.FieldPath
		default:
			env[e.Name] = e.Value
		}
	}
	for k := range env {
		if _, ok := h.ByEnv[k]; !ok {
			t.Errorf("%s: environment %s is not a twin of any flag of %s (twins: %s_<FLAG>)", name, k, bin, h.EnvPrefix)
		}
	}

	// Ports, probes and the Service.
	listenEnv := h.Flags["listen"].Env
	_, listenPort := hostPort(env[listenEnv])
	if h, _ := hostPort(env[listenEnv]); h != "0.0.0.0" && h != "" && h != "::" {
		t.Errorf("%s: %s=%q: listen on all interfaces of the pod", name, listenEnv, env[listenEnv])
	}
	portOf := func(p any) string {
		switch v := p.(type) {
		case string:
			for _, cp := range c.Ports {
				if cp.Name == v {
					return strconv.Itoa(cp.ContainerPort)
				}
			}
			return "unknown port name " + v
		case float64:
			return strconv.Itoa(int(v))
		}
		return fmt.Sprint(p)
	}
	// The public port, and the metrics port if the program has one: it
	// must be another port, and no Service may expose it (below).
	wantPorts := map[string]bool{listenPort: true}
	metricsPort := ""
	if f, ok := h.Flags["metrics-listen"]; ok {
		if env[f.Env] == "" {
			t.Errorf("%s: set %s: metrics belong on their own port, not the public one", name, f.Env)
		} else if _, metricsPort = hostPort(env[f.Env]); metricsPort == listenPort {
			t.Errorf("%s: %s=%s shares the public port %s", name, f.Env, env[f.Env], listenPort)
		}
		wantPorts[metricsPort] = true
	}
	if f, ok := h.Flags["trusted-proxies"]; ok && env[f.Env] == "" {
		t.Errorf("%s: set %s to the ingress controller's addresses: without it every user shares the controller's login-rate limit", name, f.Env)
	}
	if len(c.Ports) != len(wantPorts) {
		t.Errorf("%s: containerPorts %+v, want exactly %v", name, c.Ports, slices.Sorted(mapsKeys(wantPorts)))
	}
	for _, cp := range c.Ports {
		if !wantPorts[strconv.Itoa(cp.ContainerPort)] {
			t.Errorf("%s: containerPort %d is neither the port it listens on (%s) nor its metrics port", name, cp.ContainerPort, env[listenEnv])
		}
	}
	for _, pr := range []struct {
		kind string
		p    *k8sProbe
		path string
	}{{"readinessProbe", c.ReadinessProbe, readiness}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if pr.p == nil || pr.p.HTTPGet == nil {
			t.Errorf("%s: no httpGet %s", name, pr.kind)
			continue
		}
		if pr.p.HTTPGet.Path != pr.path || portOf(pr.p.HTTPGet.Port) != listenPort {
			t.Errorf("%s: %s GET %s on port %s, want %s on %s", name, pr.kind, pr.p.HTTPGet.Path, portOf(pr.p.HTTPGet.Port), pr.path, listenPort)
		}
	}
	svc, ok := r.get("Service", name)
	if !ok {
		t.Errorf("%s: no Service of that name", name)
		return env
	}
	ss := decodeSpec[k8sService](t, svc)
	for k, v := range ss.Selector {
		if dep.Template.Metadata.Labels[k] != v {
			t.Errorf("Service %s selects %s=%s, which its pods do not carry", name, k, v)
		}
	}
	for _, p := range ss.Ports {
		if portOf(p.TargetPort) != listenPort {
			t.Errorf("Service %s port %d targets %v, not the pod's port %s", name, p.Port, p.TargetPort, listenPort)
		}
	}
	return env
}

// servicePort returns the port number of Service name for a port name or
// number.
func servicePort(t *testing.T, r *rendered, name, port string) (int, bool) {
	t.Helper()
	svc, ok := r.get("Service", name)
	if !ok {
		return 0, false
	}
	for _, p := range decodeSpec[k8sService](t, svc).Ports {
		if p.Name == port || strconv.Itoa(p.Port) == port {
			return p.Port, true
		}
	}
	return 0, false
}

// checkServiceURL checks that raw names Service svc at one of its ports.
func checkServiceURL(t *testing.T, r *rendered, env, raw, svc string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		t.Errorf("%s %q is not an absolute URL", env, raw)
		return
	}
	if u.Hostname() != svc {
		t.Errorf("%s %s: want the %s Service", env, raw, svc)
		return
	}
	port := u.Port()
	if port == "" {
		port = urlPort(u)
	}
	if _, ok := servicePort(t, r, svc, port); !ok {
		t.Errorf("%s %s: Service %s has no port %s", env, raw, svc, port)
	}
}

// checkSecretFiles: the key and certificate paths are files of the
// generated Secret, mounted read-only.
func checkSecretFiles(t *testing.T, r *rendered, o k8sObject, files ...string) {
	t.Helper()
	pod := decodeSpec[k8sDeployment](t, o).Template.Spec
	for _, f := range files {
		found := false
		for _, vm := range pod.Containers[0].VolumeMounts {
			if path.Dir(f) != vm.MountPath {
				continue
			}
			for _, v := range pod.Volumes {
				if v.Name != vm.Name || v.Secret == nil {
					continue
				}
				sec, ok := r.get("Secret", v.Secret.SecretName)
				if !ok {
					t.Errorf("%s: volume %s uses Secret %s, which is not in the output", o.Metadata.Name, v.Name, v.Secret.SecretName)
					continue
				}
				if _, ok := sec.Data[path.Base(f)]; !ok {
					t.Errorf("%s: Secret %s has no key %s", o.Metadata.Name, sec.Metadata.Name, path.Base(f))
				}
				if !vm.ReadOnly {
					t.Errorf("%s: mount %s read-only", o.Metadata.Name, vm.MountPath)
				}
				found = true
			}
		}
		if !found {
			t.Errorf("%s: %s is not in a mounted Secret", o.Metadata.Name, f)
		}
	}
}
