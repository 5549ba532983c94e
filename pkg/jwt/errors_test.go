package jwt

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

// TestErrorChainsSayJWTOnce: every error this package returns carries one
// package prefix, whichever causes it wraps (issue 11 §2): "jwt: ", or
// "token: " for invalid settings (token.ErrInvalidConfig, shared with the
// policy compiler).
func TestErrorChainsSayJWTOnce(t *testing.T) {
	ed := jwttest.NewEd25519(t)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ns", "short"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ns", "short", "k"), []byte("too short"), 0o600); err != nil {
		t.Fatal(err)
	}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	m, clock, _ := newTestManager(t, Options{Secrets: NewDirSecrets(dir, nil)})
	noResolver, _, _ := newTestManager(t, Options{})
	tok := ed.Mint(t, claims(clock.Now()))
	ctx := context.Background()

	verifyErr := func(cfg Config) error {
		v, err := m.Verifier(cfg)
		if err != nil {
			return err
		}
		_, err = v.Verify(ctx, tok)
		return err
	}
	errs := map[string]error{
		"a missing secret file": verifyErr(Config{Issuer: testIssuer, Secret: &SecretRef{Namespace: "ns", Name: "missing", Key: "k"}}),
		"a short secret":        verifyErr(Config{Issuer: testIssuer, Secret: &SecretRef{Namespace: "ns", Name: "short", Key: "k"}}),
		"a JWKS that is down":   verifyErr(Config{Issuer: testIssuer, JWKSURI: down.URL}),
		"an inline JWKS with duplicate kids": verifyErr(Config{Issuer: testIssuer,
			InlineJWKS: jwttest.JWKS(ed, jwttest.NewEd25519(t).WithKid(ed.Kid()))}),
		"an inline JWKS without usable keys": verifyErr(Config{Issuer: testIssuer, InlineJWKS: `{"keys":[]}`}),
		"an unknown algorithm":               verifyErr(Config{Issuer: testIssuer, InlineJWKS: ed.JWKS(), Algorithms: []string{"XS1"}}),
		"a bad jwksURI":                      verifyErr(Config{Issuer: testIssuer, JWKSURI: "ftp://x"}),
		"a secret without resolver": func() error {
			_, err := noResolver.Verifier(Config{Issuer: testIssuer, Secret: &SecretRef{Namespace: "ns", Name: "n", Key: "k"}})
			return err
		}(),
	}
	for name, err := range errs {
		t.Run(name, func(t *testing.T) {
			if err == nil {
				t.Fatal("no error")
			}
			if n := strings.Count(err.Error(), "jwt: ") + strings.Count(err.Error(), "token: "); n != 1 {
				t.Fatalf("%q has %d package prefixes (jwt: or token:)", err, n)
			}
		})
	}
}
