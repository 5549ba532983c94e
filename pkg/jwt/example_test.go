package jwt_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/jwt"
)

func Example() {
	// What `tollgate token` does: a key, its JWKS and a token.
	priv, jwks, err := jwt.GenerateEd25519()
	if err != nil {
		panic(err)
	}
	tok, err := jwt.Mint(priv, map[string]any{"sub": "user-1", "iss": "https://auth.example.com", "aud": "api", "role": "admin"}, 15*time.Minute)
	if err != nil {
		panic(err)
	}

	// What the server does: one Manager per process, one Verifier per policy.
	m := jwt.NewManager(jwt.Options{})
	defer m.Close()
	v, err := m.Verifier(jwt.Config{
		Issuer:     "https://auth.example.com",
		Audiences:  []string{"api"},
		InlineJWKS: string(jwks),
		ClockSkew:  30 * time.Second,
		Claims:     []string{"role"}, // what decisions read besides sub and iss
	})
	if err != nil {
		panic(err)
	}
	id, err := v.Verify(context.Background(), tok)
	if err != nil {
		panic(err)
	}
	fmt.Println(id.Subject, id.ClaimStrings("role"))

	_, err = v.Verify(context.Background(), tok+"x")
	fmt.Println(jwt.ReasonOf(err))
	// Output:
	// user-1 [admin]
	// malformed
}
