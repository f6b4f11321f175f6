package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchboard-mcp/switchboard"
)

// fakeService answers every provider but "secret" (which the user cannot
// see) and records connections.
type fakeService struct{ connected map[string]string }

func (f *fakeService) Reachable(_ context.Context, _ *switchboard.Principal, provider string, _ bool) error {
	if provider == "secret" {
		return switchboard.Errorf(switchboard.ENOTFOUND, "no provider %q", provider)
	}
	return nil
}
func (f *fakeService) Connections(context.Context, *switchboard.Principal) (any, error) {
	return []string{"gh"}, nil
}
func (f *fakeService) Connect(_ context.Context, who *switchboard.Principal, provider string, s map[string][]byte) error {
	if err := f.Reachable(nil, who, provider, true); err != nil {
		return err
	}
	f.connected[who.ID+"/"+provider] = string(s["TOKEN"])
	return nil
}
func (f *fakeService) Disconnect(context.Context, *switchboard.Principal, string) error { return nil }
func (f *fakeService) ConnectLink(_ context.Context, who *switchboard.Principal, provider string) (string, error) {
	if err := f.Reachable(nil, who, provider, true); err != nil {
		return "", err
	}
	return "https://gw.example/connect/" + provider + "?t=x", nil
}
func (f *fakeService) Prefs(context.Context, *switchboard.Principal) (any, error) {
	return map[string]any{}, nil
}
func (f *fakeService) SetHidden(context.Context, *switchboard.Principal, string, bool) error {
	return nil
}

func TestHandler(t *testing.T) {
	svc := &fakeService{connected: map[string]string{}}
	h := Handler(svc)
	ann := &switchboard.Principal{Kind: switchboard.PrincipalUser, ID: "ann"}
	svcP := &switchboard.Principal{Kind: switchboard.PrincipalService, ID: "cron"}
	tests := []struct {
		name   string
		who    *switchboard.Principal
		method string
		path   string
		body   string
		code   int
		want   string
	}{
		{"no principal", nil, http.MethodGet, "/api/connections", "", http.StatusForbidden, "forbidden"},
		{"a service", svcP, http.MethodGet, "/api/prefs", "", http.StatusForbidden, "forbidden"},
		{"list", ann, http.MethodGet, "/api/connections", "", http.StatusOK, `"gh"`},
		{"connect", ann, http.MethodPost, "/api/connections/gh", `{"secrets":{"TOKEN":"t"}}`, http.StatusOK, "connected"},
		{"bad body", ann, http.MethodPost, "/api/connections/gh", `{`, http.StatusBadRequest, "want a JSON body"},
		// A provider the user cannot see is not found, whatever the body.
		{"hidden, bad body", ann, http.MethodPost, "/api/connections/secret", `{`, http.StatusNotFound, `no provider \"secret\"`},
		{"hide", ann, http.MethodPost, "/api/prefs/gh/hide", "", http.StatusOK, "hide"},
		{"oauth link", ann, http.MethodPost, "/api/connections/gh/oauth", "", http.StatusOK, `"url": "https://gw.example/connect/gh?t=x"`},
		{"oauth link, hidden", ann, http.MethodPost, "/api/connections/secret/oauth", "", http.StatusNotFound, `no provider`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			if tt.who != nil {
				r = r.WithContext(switchboard.NewContextWithPrincipal(r.Context(), tt.who))
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.code || !strings.Contains(w.Body.String(), tt.want) {
				t.Errorf("%s %s = %d %s; want %d with %s", tt.method, tt.path, w.Code, w.Body.String(), tt.code, tt.want)
			}
		})
	}
	if svc.connected["ann/gh"] != "t" {
		t.Errorf("connections = %v", svc.connected)
	}
}
