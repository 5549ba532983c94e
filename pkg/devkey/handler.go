package devkey

import (
	"net/http"
	"strconv"
)

// Paths at which Handler serves the JWKS.
const (
	// BetterAuthJWKSPath is where Better Auth's jwt plugin serves its keys,
	// so a policy with betterAuth.baseURL set to the handler's address
	// verifies development tokens unmodified.
	BetterAuthJWKSPath = "/api/auth/jwks"
	// WellKnownJWKSPath is the conventional JWKS location.
	WellKnownJWKSPath = "/.well-known/jwks.json"
)

// Handler serves jwks (a JWKS document) at BetterAuthJWKSPath and
// WellKnownJWKSPath, for GET and HEAD, and 404 elsewhere.
func Handler(jwks []byte) http.Handler {
	body := append([]byte(nil), jwks...)
	serve := func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		// Short, so that a regenerated key is picked up within a minute
		// (tollgate clamps refresh intervals to at least one minute).
		h.Set("Cache-Control", "public, max-age=60")
		_, _ = w.Write(body)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+BetterAuthJWKSPath, serve)
	mux.HandleFunc("GET "+WellKnownJWKSPath, serve)
	return mux
}
