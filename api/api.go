// Package api serves the user self-service REST API: a user manages their
// own connections (credentials for providers that run per user) and
// preferences (providers hidden from their own sessions) with their own
// token. Secrets never pass through MCP.
package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"

	"github.com/switchboard-mcp/switchboard"
)

// Service is what the API serves. Each method acts for the user who, and
// must answer a provider that user cannot see exactly as one that does not
// exist (an ENOTFOUND error).
type Service interface {
	// Connections lists who's connections, without secret values.
	Connections(ctx context.Context, who *switchboard.Principal) (any, error)
	// Reachable returns nil if who may connect provider (connection) or set a
	// preference for it, else the error who gets, before anything else is
	// read: a provider they cannot see does not exist.
	Reachable(ctx context.Context, who *switchboard.Principal, provider string, connection bool) error
	// Connect stores who's secrets for provider and restarts their instance.
	Connect(ctx context.Context, who *switchboard.Principal, provider string, secrets map[string][]byte) error
	// Disconnect removes who's connection to provider and stops their instance.
	Disconnect(ctx context.Context, who *switchboard.Principal, provider string) error
	// ConnectLink returns a one-use link (ten minutes) by which who connects
	// provider with OAuth in a browser.
	ConnectLink(ctx context.Context, who *switchboard.Principal, provider string) (string, error)
	// Prefs returns who's preferences.
	Prefs(ctx context.Context, who *switchboard.Principal) (any, error)
	// SetHidden hides or shows provider in who's sessions.
	SetHidden(ctx context.Context, who *switchboard.Principal, provider string, hide bool) error
}

// maxBody bounds a request body.
const maxBody = 1 << 20

// Handler serves, under /api/, to authenticated users (the principal in the
// request context; put it behind the gateway's edge):
//
//	GET    /api/connections
//	POST   /api/connections/{provider}   {"secrets": {"NAME": "value"}}
//	POST   /api/connections/{provider}/oauth  → {"url": "…/connect/{provider}?t=…"}
//	DELETE /api/connections/{provider}
//	GET    /api/prefs
//	POST   /api/prefs/{provider}/hide
//	POST   /api/prefs/{provider}/show
//
// Errors are {"error": "..."} with 404 (ENOTFOUND), 500 (EINTERNAL) or 400.
func Handler(svc Service) http.Handler {
	h := http.NewServeMux()
	h.Handle("GET /api/connections", user(func(w http.ResponseWriter, r *http.Request, p *switchboard.Principal) {
		list, err := svc.Connections(r.Context(), p)
		reply(w, err, map[string]any{"connections": list})
	}))
	h.Handle("POST /api/connections/{provider}", user(func(w http.ResponseWriter, r *http.Request, p *switchboard.Principal) {
		if err := svc.Reachable(r.Context(), p, r.PathValue("provider"), true); err != nil {
			reply(w, err, nil)
			return
		}
		var body struct {
			Secrets map[string]string `json:"secrets"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&body); err != nil {
			reply(w, switchboard.Errorf(switchboard.EINVALID, "want a JSON body {\"secrets\": {\"NAME\": \"value\"}}"), nil)
			return
		}
		values := map[string][]byte{}
		for k, v := range body.Secrets {
			values[k] = []byte(v)
		}
		reply(w, svc.Connect(r.Context(), p, r.PathValue("provider"), values), map[string]string{"status": "connected"})
	}))
	h.Handle("POST /api/connections/{provider}/oauth", user(func(w http.ResponseWriter, r *http.Request, p *switchboard.Principal) {
		link, err := svc.ConnectLink(r.Context(), p, r.PathValue("provider"))
		reply(w, err, map[string]string{"url": link})
	}))
	h.Handle("DELETE /api/connections/{provider}", user(func(w http.ResponseWriter, r *http.Request, p *switchboard.Principal) {
		reply(w, svc.Disconnect(r.Context(), p, r.PathValue("provider")), map[string]string{"status": "disconnected"})
	}))
	h.Handle("GET /api/prefs", user(func(w http.ResponseWriter, r *http.Request, p *switchboard.Principal) {
		prefs, err := svc.Prefs(r.Context(), p)
		reply(w, err, prefs)
	}))
	for _, hide := range []bool{true, false} {
		verb := "show"
		if hide {
			verb = "hide"
		}
		h.Handle("POST /api/prefs/{provider}/"+verb, user(func(w http.ResponseWriter, r *http.Request, p *switchboard.Principal) {
			reply(w, svc.SetHidden(r.Context(), p, r.PathValue("provider"), hide), map[string]string{"status": verb})
		}))
	}
	return h
}

// user passes on requests of a user principal only.
func user(fn func(w http.ResponseWriter, r *http.Request, p *switchboard.Principal)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := switchboard.PrincipalFromContext(r.Context())
		if p == nil || p.Kind != switchboard.PrincipalUser {
			WriteJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden"})
			return
		}
		fn(w, r, p)
	})
}

func reply(w http.ResponseWriter, err error, ok any) {
	if err != nil {
		code := http.StatusBadRequest
		switch switchboard.ErrorCode(err) {
		case switchboard.ENOTFOUND:
			code = http.StatusNotFound
		case switchboard.EINTERNAL:
			code = http.StatusInternalServerError
		}
		WriteJSON(w, code, map[string]string{"error": switchboard.ErrorMessage(err)})
		return
	}
	WriteJSON(w, http.StatusOK, ok)
}

// WriteJSON writes v as indented JSON with status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
