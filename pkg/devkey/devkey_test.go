package devkey_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/devkey"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
)

func TestGenerateMintVerify(t *testing.T) {
	for _, alg := range []string{"EdDSA", "Ed25519", "ES256", "ES384", "RS256", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			dir := t.TempDir()
			keyFile := filepath.Join(dir, "k", "key.json")
			k, err := devkey.Generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			if err := k.Save(keyFile, devkey.JWKSPath(keyFile), false); err != nil {
				t.Fatal(err)
			}
			loaded, err := devkey.Load(keyFile)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := loaded.Mint(map[string]any{"sub": "alice", "iss": "https://i.test"}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			jwks, err := os.ReadFile(devkey.JWKSPath(keyFile))
			if err != nil {
				t.Fatal(err)
			}
			m := jwt.NewManager(jwt.Options{})
			defer m.Close()
			v, err := m.Verifier(jwt.Config{Issuer: "https://i.test", InlineJWKS: string(jwks)})
			if err != nil {
				t.Fatal(err)
			}
			id, err := v.Verify(context.Background(), tok)
			if err != nil || id.Subject != "alice" {
				t.Fatalf("verify: %v, %+v", err, id)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	k, err := devkey.Generate("EdDSA")
	if err != nil {
		t.Fatal(err)
	}
	public, err := k.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	publicKey := strings.TrimSuffix(strings.TrimPrefix(string(public), `{"keys":[`), `]}`)
	tests := map[string]struct {
		data string
		want string
	}{
		"an empty file":       {"  \n", "empty key file"},
		"broken JSON":         {`{"kty":`, "not a JWK"},
		"a public key":        {publicKey, "no private key"},
		"a key without alg":   {`{"kty":"OKP","crv":"Ed25519","d":"x","x":"y"}`, "unknown algorithm"},
		"alg none":            {`{"kty":"OKP","alg":"none","d":"x"}`, "never allowed"},
		"an HS key as a JWK":  {`{"kty":"oct","alg":"HS256","k":"c2VjcmV0","d":"x"}`, "raw secrets"},
		"damaged key members": {`{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","d":"!!","x":"!!"}`, "devkey:"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := devkey.Parse([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestWithAlg(t *testing.T) {
	ed, err := devkey.Generate("EdDSA")
	if err != nil {
		t.Fatal(err)
	}
	secret, err := devkey.Parse([]byte(strings.Repeat("s", 40)))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		key     *devkey.Key
		alg     string
		wantAlg string // "" when an error is expected
	}{
		"a key keeps its own algorithm":      {ed, "EdDSA", "EdDSA"},
		"Ed25519 is EdDSA":                   {ed, "Ed25519", "EdDSA"},
		"an EdDSA key cannot sign ES256":     {ed, "ES256", ""},
		"a secret is HS256 by default":       {secret, "HS256", "HS256"},
		"a secret may sign HS512":            {secret, "HS512", "HS512"},
		"a secret cannot sign EdDSA":         {secret, "EdDSA", ""},
		"none is refused whatever the key":   {secret, "none", ""},
		"unknown algorithms are refused too": {ed, "XX1", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			k, err := tc.key.WithAlg(tc.alg)
			if tc.wantAlg == "" {
				if err == nil {
					t.Fatalf("WithAlg(%s) = %s, want an error", tc.alg, k.Alg())
				}
				return
			}
			if err != nil || k.Alg() != tc.wantAlg {
				t.Fatalf("WithAlg(%s): %v, want %s", tc.alg, err, tc.wantAlg)
			}
		})
	}
}

func TestEnsureAndSave(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "a", "b", "key.json")
	k1, created, err := devkey.Ensure(keyFile, "EdDSA")
	if err != nil || !created {
		t.Fatalf("first Ensure: created %t, %v", created, err)
	}
	for path, want := range map[string]os.FileMode{keyFile: 0o600, filepath.Dir(keyFile): 0o700, devkey.JWKSPath(keyFile): 0o644} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), want)
		}
	}
	k2, created, err := devkey.Ensure(keyFile, "ES256")
	if err != nil || created || k2.Alg() != k1.Alg() {
		t.Fatalf("second Ensure: created %t, alg %s, %v", created, k2.Alg(), err)
	}
	other, err := devkey.Generate("EdDSA")
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Save(keyFile, devkey.JWKSPath(keyFile), false); !errors.Is(err, devkey.ErrExists) {
		t.Fatalf("Save without force: %v, want ErrExists", err)
	}
	if err := other.Save(keyFile, devkey.JWKSPath(keyFile), true); err != nil {
		t.Fatalf("Save with force: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(keyFile))
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want the key and its JWKS only (no temporary files)", len(entries))
	}
}

func TestParseClaimValue(t *testing.T) {
	tests := map[string]struct {
		in   string
		want string // fmt "%T %v" of the result
	}{
		"a word":              {"admin", "string admin"},
		"an integer":          {"42", "json.Number 42"},
		"true":                {"true", "bool true"},
		"null":                {"null", "<nil> <nil>"},
		"a quoted number":     {`"42"`, "string 42"},
		"an array":            {`[1,"a"]`, "[]interface {} [1 a]"},
		"an object":           {`{"k":"v"}`, "map[string]interface {} map[k:v]"},
		"two values":          {"1 2", "string 1 2"},
		"trailing garbage":    {"true x", "string true x"},
		"empty":               {"", "string "},
		"leading white space": {" 7 ", "json.Number 7"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			v := devkey.ParseClaimValue(tc.in)
			if got := fmt.Sprintf("%T %v", v, v); got != tc.want {
				t.Fatalf("ParseClaimValue(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func ExampleParseClaims() {
	claims, err := devkey.ParseClaims([]string{"role=admin", "level=3", `tags=["a","b"]`, "beta=true"})
	if err != nil {
		panic(err)
	}
	fmt.Println(claims["role"], claims["level"], claims["tags"], claims["beta"])
	// Output: admin 3 [a b] true
}
