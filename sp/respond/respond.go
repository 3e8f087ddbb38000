// Package respond is the one place the SP answers a person or a program:
// its HTML pages (templates in web/), JSON answers, the auto-POST form that
// sends an AuthnRequest, the security headers of each, and the one failure
// path. Every refusal of every mode goes through Responder.Fail, which sets
// X-Samlha-Cause and Retry-After, counts samlha_sp_failures_total, logs at
// the cause's level (sampled under a flood) and renders the explanation as
// a page or as JSON.
package respond

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/web"
)

// Header names every reply of the SP may carry.
const (
	HeaderInstance = "X-Samlha-Instance" // the replica that served the reply
	HeaderCause    = "X-Samlha-Cause"    // on refusals: the failure.Cause
	HeaderUser     = "X-Samlha-User"     // on the app pages: the logged-in user
)

// StylePath is where the SP's own style sheet is served, in every mode: under
// /saml/, which is the SP's own in gateway mode too.
const StylePath = "/saml/static/style.css"

// Config configures a Responder.
type Config struct {
	// Context is what explanations may name (instance, store kind, the
	// metadata flag, the logout path of this mode).
	Context failure.Context
	// RetryPath is where "Try logging in again" points after a refusal
	// that a new login can cure; "" shows no such link.
	RetryPath string
	Logger    *slog.Logger
	Registry  prometheus.Registerer
	// Now is the clock of the pages' footer; nil is time.Now.
	Now func() time.Time
}

// Responder answers requests for one SP replica.
type Responder struct {
	cfg      Config
	pages    *template.Template
	failures *prometheus.CounterVec
	logs     sync.Map // failure.Cause -> *sampler
}

// New parses the templates and registers samlha_sp_failures_total, with a
// zero series for every cause (response-invalid has one per reason, made
// when it first happens).
func New(cfg Config) (*Responder, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pages, err := web.SPTemplates(template.FuncMap{})
	if err != nil {
		return nil, fmt.Errorf("parse templates: %w", err)
	}
	r := &Responder{cfg: cfg, pages: pages,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samlha_sp_failures_total",
			Help: "Refusals by cause (see README, failure taxonomy); reason sub-classifies some causes (response-invalid: crewjam's sentinel; login-rate-limited: client or replica).",
		}, []string{"cause", "reason"})}
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(r.failures); err != nil {
			return nil, err
		}
	}
	for _, c := range failure.AllCauses {
		if c != failure.CauseResponseInvalid {
			r.failures.WithLabelValues(string(c), "")
		}
	}
	return r, nil
}

// Context is what explanations may name about this replica.
func (r *Responder) Context() failure.Context { return r.cfg.Context }

// Fail answers f: the one failure path. It counts f, logs it (at most
// logsPerSecond lines a second per cause, with the number left out on the
// next line), and writes its status, X-Samlha-Cause, Retry-After (every
// 503 and 429 has one), the security headers, and the explanation as a page
// or, for a program, as JSON.
func (r *Responder) Fail(w http.ResponseWriter, req *http.Request, f *failure.Failure) {
	r.Record(req, f)
	if f.Cause == failure.CauseClientGone {
		return // nobody is listening
	}
	status := f.Cause.Status()
	h := w.Header()
	h.Set(HeaderCause, string(f.Cause))
	switch {
	case f.RetryAfter > 0:
		SetRetryAfter(h, f.RetryAfter)
	case status == http.StatusServiceUnavailable:
		SetRetryAfter(h, 5*time.Second)
	}
	ex := failure.Explain(f, r.cfg.Context)
	if f.API || wantsJSON(req) {
		body := map[string]any{"error": string(f.Cause), "reason": f.Reason, "title": ex.Title,
			"what": ex.What, "fixes": ex.Fixes, "instance": r.cfg.Context.Instance, "origin": f.Origin}
		if f.LoginURL != "" {
			body["login_url"] = f.LoginURL
		}
		JSON(w, status, body)
		return
	}
	details := []nameValue{{"cause", string(f.Cause)}, {"this instance", r.cfg.Context.Instance}, {"store", r.cfg.Context.StoreKind}}
	if f.Reason != "" {
		details = append(details, nameValue{"reason", f.Reason})
	}
	if f.Origin != "" {
		details = append(details, nameValue{"login began on", f.Origin})
	}
	if f.RequestID != "" {
		details = append(details, nameValue{"AuthnRequest ID", f.RequestID})
	}
	retry := r.cfg.RetryPath
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests || f.Cause == failure.CauseSessionRequired {
		retry = "" // logging in again is not what helps
	}
	r.Page(w, status, "error.html", struct {
		Page
		Cause    string
		Status   int
		What     string
		Fixes    []string
		Details  []nameValue
		RetryURL string
	}{r.PageData(ex.Title), string(f.Cause), status, ex.What, ex.Fixes, details, retry})
}

// Record counts and logs f without answering: for a refusal the caller
// answers otherwise (a logout whose IdP confirmation was refused ends on
// the signed-out page all the same).
func (r *Responder) Record(req *http.Request, f *failure.Failure) {
	r.failures.WithLabelValues(string(f.Cause), f.Reason).Inc()
	r.log(req, f)
}

// log writes f's log line, sampled per cause.
func (r *Responder) log(req *http.Request, f *failure.Failure) {
	s := r.sampler(f.Cause)
	left, ok := s.allow(r.cfg.Now())
	if !ok {
		return
	}
	op := f.Op
	if op == "" {
		op = "login"
	}
	attrs := []any{"cause", string(f.Cause), "reason", f.Reason, "status", f.Cause.Status(),
		"origin", f.Origin, "request_id", f.RequestID, "method", req.Method, "path", failure.Truncate(req.URL.Path, 200), "detail", f.Detail}
	if left > 0 {
		attrs = append(attrs, "not_logged", left)
	}
	r.cfg.Logger.Log(req.Context(), f.Cause.LogLevel(), op+" refused", attrs...)
}

// Logging of refusals: a flood must not become a flood of log lines. Each
// cause may log logsPerSecond lines a second (burst logsBurst); the metric
// counts every refusal, and the next line logged says how many were not.
const (
	logsPerSecond = 10
	logsBurst     = 20
)

type sampler struct {
	lim  *rate.Limiter
	mu   sync.Mutex
	left int64
}

func (r *Responder) sampler(c failure.Cause) *sampler {
	if s, ok := r.logs.Load(c); ok {
		return s.(*sampler)
	}
	s, _ := r.logs.LoadOrStore(c, &sampler{lim: rate.NewLimiter(logsPerSecond, logsBurst)})
	return s.(*sampler)
}

// allow reports whether a line may be logged now, and how many were left
// out since the last one.
func (s *sampler) allow(now time.Time) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lim.AllowN(now, 1) {
		s.left++
		return 0, false
	}
	left := s.left
	s.left = 0
	return left, true
}

// Page is the data every template gets.
type Page struct {
	Title, Instance, StoreKind, Now, StylePath string
	// LogoutPath is where this mode's logout page is.
	LogoutPath string
}

// PageData is the data of a page titled title. It names the store's kind,
// never its address: the pages are public.
func (r *Responder) PageData(title string) Page {
	c := r.cfg.Context
	return Page{Title: title, Instance: c.Instance, StoreKind: c.StoreKind, StylePath: StylePath,
		LogoutPath: c.LogoutPath, Now: r.cfg.Now().UTC().Format(time.RFC3339)}
}

// Page renders the template name with data, with the page's security
// headers and status.
func (r *Responder) Page(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := r.pages.ExecuteTemplate(&buf, name, data); err != nil {
		r.cfg.Logger.Error("cannot render page", "template", name, "err", err)
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	SetPageHeaders(w.Header())
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type nameValue struct {
	Name  string
	Value string
}

// wantsJSON reports whether r asks for JSON rather than a page: an Accept
// header that prefers it, a script's request, or /whoami (an API).
func wantsJSON(r *http.Request) bool {
	a := r.Header.Get("Accept")
	if strings.Contains(a, "application/json") && !strings.Contains(a, "text/html") {
		return true
	}
	return r.URL.Path == "/whoami" || strings.EqualFold(r.Header.Get("X-Requested-With"), "XMLHttpRequest")
}

// JSON writes v as indented JSON with status, uncached and with the
// security headers.
func JSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	SetBaseline(h)
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// SetRetryAfter sets Retry-After to d in whole seconds, at least one.
func SetRetryAfter(h http.Header, d time.Duration) {
	secs := int64(math.Ceil(d.Seconds()))
	h.Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
}
