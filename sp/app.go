package sp

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/crewjam/saml/samlsp"

	"github.com/samlha/samlha/sp/identity"
	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/sp/session"
)

type attribute struct {
	Name   string
	Values []string
}

func (s *SP) serveIndex(w http.ResponseWriter, r *http.Request) {
	expl := "Logins can only be finished by the replica that began them, so the load balancer must pin browsers to replicas (sticky sessions)."
	switch {
	case s.cfg.Store == nil:
		expl = "Login state travels in cookies signed with the SP key: any replica with the same key can finish any login."
	case s.engine.Shared():
		expl = "Login state is shared: any replica using the same store can finish any login."
	}
	s.resp.Page(w, http.StatusOK, "index.html", struct {
		respond.Page
		StoreExplanation string
	}{s.resp.PageData("Home"), expl})
}

// sessionView is what /app and /whoami show of a session.
type sessionView struct {
	User          string      `json:"user"`
	NameID        string      `json:"name_id"`
	Serving       string      `json:"instance"`
	LoginInstance string      `json:"login_instance"`
	ACSInstance   string      `json:"acs_instance"`
	Store         string      `json:"store"`
	Expires       time.Time   `json:"expires"`
	Attributes    []attribute `json:"attributes"`
}

func (s *SP) view(sess samlsp.Session) sessionView {
	v := sessionView{Serving: s.cfg.InstanceID, Store: s.storeKind,
		LoginInstance: "(not recorded in stateless mode)", ACSInstance: "(not recorded in stateless mode)"}
	var attrs samlsp.Attributes
	switch t := sess.(type) {
	case *session.Session:
		v.NameID = t.GetNameID()
		v.LoginInstance, v.ACSInstance, v.Expires = t.LoginInstance, t.ACSInstance, t.Expires
		attrs = t.GetAttributes()
	case samlsp.JWTSessionClaims:
		v.NameID = t.GetNameID()
		if t.ExpiresAt != nil {
			v.Expires = t.ExpiresAt.Time
		}
		attrs = t.GetAttributes()
	}
	v.User = identity.UserName(v.NameID, attrs)
	for name, vals := range attrs {
		v.Attributes = append(v.Attributes, attribute{Name: name, Values: vals})
	}
	slices.SortFunc(v.Attributes, func(a, b attribute) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return v
}

func (s *SP) serveApp(w http.ResponseWriter, r *http.Request) {
	v := s.view(samlsp.SessionFromContext(r.Context()))
	w.Header().Set(respond.HeaderUser, v.User)
	s.resp.Page(w, http.StatusOK, "app.html", struct {
		respond.Page
		sessionView
		Expires string
	}{s.resp.PageData("App"), v, v.Expires.UTC().Format(time.RFC3339)})
}

// serveWhoami answers with the session as JSON, or 401 without starting a
// login: it is for scripts checking whether a session holds on a replica.
func (s *SP) serveWhoami(w http.ResponseWriter, r *http.Request) {
	sess, err, ok := s.engine.Session(w, r)
	if !ok {
		return
	}
	if sess == nil {
		body := map[string]any{"error": "no-session", "instance": s.cfg.InstanceID}
		var miss *session.Miss
		if errors.As(err, &miss) {
			body["miss"], body["origin"], body["detail"] = miss.Kind, miss.Origin, miss.Detail
		}
		respond.JSON(w, http.StatusUnauthorized, body)
		return
	}
	v := s.view(sess)
	w.Header().Set(respond.HeaderUser, v.User)
	respond.JSON(w, http.StatusOK, v)
}

func (s *SP) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	respond.JSON(w, http.StatusOK, map[string]any{"status": "alive", "instance": s.cfg.InstanceID})
}

// serveReadyz is ready when the IdP metadata is loaded and the store
// answers a real round trip.
func (s *SP) serveReadyz(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{"idp_metadata": "ok", "store": "ok"}
	ready := true
	if !s.engine.Ready() {
		checks["idp_metadata"], ready = "not loaded", false
	}
	st := s.cfg.Store
	if st == nil {
		st = s.cfg.Handoff // stateless on the way to a shared store depends on it
	}
	if st != nil {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.StoreTimeout)
		defer cancel()
		if err := st.Ping(ctx); err != nil {
			checks["store"], ready = err.Error(), false
		}
	} else {
		checks["store"] = "stateless (none)"
	}
	// A replica at its pending-logins ceiling stays ready: it still serves
	// sessions and finishes logins in progress; only new logins wait. A
	// flood reaches every replica, and taking them all out of the balancer
	// would log everyone out for nothing. /readyz?logins is for a balancer
	// that routes login starts apart: 503 while this replica refuses every
	// new login.
	now := s.now()
	checks["login_capacity"] = s.logins.Capacity(now)
	logins := s.logins.Logins(now)
	if r.URL.Query().Has("logins") && logins == "full" {
		ready = false
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	respond.JSON(w, status, map[string]any{"ready": ready, "instance": s.cfg.InstanceID, "store": s.storeKind, "logins": logins, "checks": checks})
}
