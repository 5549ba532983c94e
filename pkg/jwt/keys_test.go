package jwt

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

// TestKeySetLimits: a key set is capped at MaxKeys, a kid names at most one
// key per algorithm, and a token is checked against at most one key
// (issue 13 §2).
func TestKeySetLimits(t *testing.T) {
	ed := jwttest.NewEd25519(t)
	many := make([]*jwttest.Key, MaxKeys+1)
	for i := range many {
		many[i] = jwttest.NewEd25519(t)
	}
	cases := map[string]struct {
		jwks    string
		wantErr error
		text    []string
	}{
		"two keys under one kid for one algorithm are refused": {
			jwks: jwttest.JWKS(ed, jwttest.NewEd25519(t).WithKid(ed.Kid())), wantErr: ErrDuplicateKid,
			text: []string{"duplicate kid", ed.Kid(), "EdDSA"}},
		"two keys without kid for one algorithm are refused": {
			jwks: jwksWithoutKids(t, jwttest.NewEd25519(t), jwttest.NewEd25519(t)), wantErr: ErrDuplicateKid,
			text: []string{"two keys without kid fit EdDSA"}},
		"more than MaxKeys keys are refused": {
			jwks: jwttest.JWKS(many...), wantErr: ErrTooManyKeys, text: []string{"65 keys, at most 64"}},
		"MaxKeys keys are accepted":                            {jwks: jwttest.JWKS(many[:MaxKeys]...)},
		"one kid for keys of different algorithms is accepted": {jwks: jwttest.JWKS(ed, jwttest.NewES256(t).WithKid(ed.Kid()))},
	}
	m, _, _ := newTestManager(t, Options{})
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := m.Verifier(Config{Issuer: testIssuer, InlineJWKS: c.jwks})
			if c.wantErr == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, c.wantErr) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			for _, s := range c.text {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

// jwksWithoutKids returns a JWKS of keys whose kid member is removed.
func jwksWithoutKids(t *testing.T, keys ...*jwttest.Key) string {
	t.Helper()
	doc := jwttest.JWKS(keys...)
	for _, k := range keys {
		doc = strings.Replace(doc, `"kid":"`+k.Kid()+`",`, "", 1)
	}
	if strings.Contains(doc, `"kid"`) {
		t.Fatalf("kid left in %s", doc)
	}
	return doc
}

// TestVerifyChecksOneKey: a token is checked against the one key its kid
// names for its algorithm; one without kid only when exactly one key fits.
func TestVerifyChecksOneKey(t *testing.T) {
	ed, ed2, es := jwttest.NewEd25519(t), jwttest.NewEd25519(t), jwttest.NewES256(t)
	sameKidES := es.WithKid(ed.Kid())
	m, clock, _ := newTestManager(t, Options{CacheSize: -1})
	now := clock.Now()
	mixed := mustVerifier(t, m, Config{Issuer: testIssuer, InlineJWKS: jwttest.JWKS(ed, sameKidES)})
	twoEd := mustVerifier(t, m, Config{Issuer: testIssuer, InlineJWKS: jwttest.JWKS(ed, ed2)})
	cases := map[string]struct {
		v     *Verifier
		token string
		want  Reason
	}{
		"an EdDSA token under a shared kid uses the Ed25519 key": {mixed, ed.Mint(t, claims(now)), ""},
		"an ES256 token under a shared kid uses the P-256 key":   {mixed, sameKidES.Mint(t, claims(now)), ""},
		"a token without kid and one fitting key is accepted":    {mixed, ed.MintHeader(t, map[string]any{}, claims(now)), ""},
		"a token without kid and two fitting keys is refused":    {twoEd, ed.MintHeader(t, map[string]any{}, claims(now)), ReasonUnknownKid},
		"a token with kid among two keys is accepted":            {twoEd, ed2.Mint(t, claims(now)), ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := c.v.Verify(context.Background(), c.token)
			if got := ReasonOf(err); got != c.want {
				t.Fatalf("reason %q (%v), want %q", got, err, c.want)
			}
		})
	}
}

// TestVerifyEveryAlgorithm checks each algorithm's signature verification:
// a token signed with the configured key passes, one signed with another
// key of the same kid fails, and a signature of the wrong length fails.
func TestVerifyEveryAlgorithm(t *testing.T) {
	for _, alg := range algorithmNames {
		t.Run(alg, func(t *testing.T) {
			k := jwttest.New(t, alg)
			other := jwttest.New(t, alg).WithKid(k.Kid())
			opts := Options{CacheSize: -1}
			cfg := Config{Issuer: testIssuer, Algorithms: []string{alg}}
			if alg[:2] == "HS" {
				opts.Secrets = secretFunc(func(context.Context, SecretRef) ([]byte, error) { return k.Secret(), nil })
				cfg.Secret = &SecretRef{Namespace: "ns", Name: "n", Key: "k"}
			} else {
				cfg.InlineJWKS = k.JWKS()
			}
			m, clock, _ := newTestManager(t, opts)
			v := mustVerifier(t, m, cfg)
			good := k.Mint(t, claims(clock.Now()))
			if _, err := v.Verify(context.Background(), good); err != nil {
				t.Fatalf("valid %s token: %v", alg, err)
			}
			if _, err := v.Verify(context.Background(), other.Mint(t, claims(clock.Now()))); ReasonOf(err) != ReasonBadSignature {
				t.Fatalf("another key's %s token: %v, want bad_signature", alg, err)
			}
			dot := strings.LastIndexByte(good, '.')
			sig, err := base64.RawURLEncoding.DecodeString(good[dot+1:])
			if err != nil {
				t.Fatal(err)
			}
			short := good[:dot+1] + base64.RawURLEncoding.EncodeToString(sig[:len(sig)-1])
			if _, err := v.Verify(context.Background(), short); ReasonOf(err) != ReasonBadSignature {
				t.Fatalf("short %s signature: %v, want bad_signature", alg, err)
			}
		})
	}
}
