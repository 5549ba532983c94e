package token_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/token"
)

func TestValidate(t *testing.T) {
	secret := &token.SecretRef{Namespace: "ns", Name: "n", Key: "k"}
	tests := map[string]struct {
		cfg  token.Config
		algs []string
		err  error
	}{
		"a key set defaults to every asymmetric algorithm": {
			cfg:  token.Config{Issuer: "https://i", InlineJWKS: "{}"},
			algs: token.DefaultAlgorithms(false)},
		"a secret defaults to HS256": {
			cfg: token.Config{Issuer: "https://i", Secret: secret}, algs: []string{"HS256"}},
		"Ed25519 is EdDSA": {
			cfg:  token.Config{Issuer: "https://i", JWKSURI: "https://i/jwks", Algorithms: []string{"Ed25519"}},
			algs: []string{"EdDSA"}},
		"none is never allowed, in any spelling": {
			cfg: token.Config{Issuer: "https://i", InlineJWKS: "{}", Algorithms: []string{"NoNe"}}, err: token.ErrUnknownAlgorithm},
		"an unknown algorithm": {
			cfg: token.Config{Issuer: "https://i", InlineJWKS: "{}", Algorithms: []string{"XS1"}}, err: token.ErrUnknownAlgorithm},
		"HMAC with a key set": {
			cfg: token.Config{Issuer: "https://i", InlineJWKS: "{}", Algorithms: []string{"HS256"}}, err: token.ErrHMACWithoutSecret},
		"an asymmetric algorithm with a secret": {
			cfg: token.Config{Issuer: "https://i", Secret: secret, Algorithms: []string{"RS256"}}, err: token.ErrSecretWithoutHMAC},
		"a clock skew over the bound": {
			cfg: token.Config{Issuer: "https://i", InlineJWKS: "{}", ClockSkew: token.MaxClockSkew + time.Second}, err: token.ErrInvalidConfig},
		"a negative clock skew": {
			cfg: token.Config{Issuer: "https://i", InlineJWKS: "{}", ClockSkew: -time.Second}, err: token.ErrInvalidConfig},
		"two key sources": {
			cfg: token.Config{Issuer: "https://i", InlineJWKS: "{}", JWKSURI: "https://i/jwks"}, err: token.ErrInvalidConfig},
		"a jwksURI that is not http(s)": {
			cfg: token.Config{Issuer: "https://i", JWKSURI: "ftp://i/jwks"}, err: token.ErrInvalidConfig},
		"no issuer": {
			cfg: token.Config{InlineJWKS: "{}"}, err: token.ErrInvalidConfig},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			algs, err := tc.cfg.Validate()
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("Validate() error %v, want %v", err, tc.err)
			}
			if err == nil && !slices.Equal(algs, tc.algs) {
				t.Fatalf("algorithms %v, want %v", algs, tc.algs)
			}
		})
	}
}

func TestReasonOf(t *testing.T) {
	if r := token.ReasonOf(errors.New("plain")); r != "" {
		t.Fatalf("ReasonOf(plain) = %q", r)
	}
}
