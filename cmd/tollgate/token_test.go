package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// mintToken runs `tollgate token` and returns the token it printed.
func mintToken(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, stderr := runCommand(t, append([]string{"token"}, args...)...)
	if code != 0 {
		t.Fatalf("token %v: exit code %d; stderr:\n%s", args, code, stderr)
	}
	tok := strings.TrimSuffix(stdout, "\n")
	if strings.Count(tok, ".") != 2 || strings.ContainsAny(tok, " \n") {
		t.Fatalf("token printed %q, want one compact JWS", stdout)
	}
	return tok
}

// tokenPart decodes part i (0 header, 1 claims) of a token into raw JSON
// values by name.
func tokenPart(t *testing.T, tok string, i int) map[string]json.RawMessage {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// TestTokenRoundTripThroughCheck mints tokens with a key the token command
// generates and has check verify them against a policy holding the JWKS
// written next to the key.
func TestTokenRoundTripThroughCheck(t *testing.T) {
	keyDir := filepath.Join(t.TempDir(), "keys")
	keyFile := filepath.Join(keyDir, "dev-key.json")
	mint := func(extra ...string) string {
		return mintToken(t, append([]string{"--key", keyFile, "--iss", testIssuer, "--aud", testAudience}, extra...)...)
	}

	code, stdout, stderr := runCommand(t, "token", "--key", keyFile, "--iss", testIssuer, "--aud", testAudience, "--sub", "alice")
	if code != 0 || !strings.Contains(stderr, "generated a EdDSA key in "+keyFile) || !strings.Contains(stderr, "dev-jwks.json") {
		t.Fatalf("first token: exit code %d, stderr:\n%s", code, stderr)
	}
	alice := strings.TrimSpace(stdout)
	if m := fileMode(t, keyFile); m != 0o600 {
		t.Errorf("key file mode %v, want 0600", m)
	}
	if m := fileMode(t, keyDir); m != 0o700 {
		t.Errorf("key directory mode %v, want 0700", m)
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := os.ReadFile(filepath.Join(keyDir, "dev-jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(jwks, []byte(`"d"`)) {
		t.Fatalf("the JWKS holds a private key: %s", jwks)
	}

	// Later tokens reuse the key.
	admin := mint("--sub", "carol", "--claim", "role=admin")
	code, _, stderr = runCommand(t, "token", "--key", keyFile, "--sub", "x")
	if again, _ := os.ReadFile(keyFile); code != 0 || !bytes.Equal(again, key) || strings.Contains(stderr, "generated") {
		t.Fatalf("second token replaced the key or said so (exit code %d):\n%s", code, stderr)
	}

	dir := writeTestPolicies(t, string(jwks))
	tests := map[string]struct {
		path, token string
		code        int
		contains    string
	}{
		"alice reads her tasks":       {"/api/users/alice/tasks/1", alice, 0, "sub=alice"},
		"alice is kept from bob's":    {"/api/users/bob/tasks/1", alice, 1, "owner_mismatch"},
		"a role claim makes an admin": {"/api/users/bob/tasks/1", admin, 0, "owner bypass role claim"},
		"an exp claim overrides --ttl": {"/api/users/alice/tasks/1",
			mint("--sub", "alice", "--claim", "exp=1000"), 1, "expired"},
		"another issuer is refused": {"/api/users/alice/tasks/1",
			mint("--sub", "alice", "--iss", "https://elsewhere.test"), 1, "bad_issuer"},
		"another audience is refused": {"/api/users/alice/tasks/1",
			mint("--sub", "alice", "--aud", "https://elsewhere.test"), 1, "bad_audience"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := runCommand(t, "check", "--policy-dir", dir, "--host", "api.example.com", "--path", tc.path, "--token", tc.token)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d; stdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			if !strings.Contains(blanks.ReplaceAllString(stdout, " "), tc.contains) {
				t.Errorf("stdout does not contain %q:\n%s", tc.contains, stdout)
			}
		})
	}
}

func TestTokenClaims(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key.json")
	tests := map[string]struct {
		args []string
		// want maps claim names to their JSON in the token.
		want map[string]string
	}{
		"defaults fit the sample policy": {
			args: []string{"--sub", "alice"},
			want: map[string]string{"sub": `"alice"`, "iss": `"http://localhost:3000"`, "aud": `"http://localhost:3000"`},
		},
		"a word is a string": {
			args: []string{"--sub", "a", "--claim", "role=admin", "--claim", "plan=premium"},
			want: map[string]string{"role": `"admin"`, "plan": `"premium"`},
		},
		"numbers keep every digit": {
			args: []string{"--sub", "a", "--claim", "n=42", "--claim", "big=12345678901234567890", "--claim", "f=1.5"},
			want: map[string]string{"n": `42`, "big": `12345678901234567890`, "f": `1.5`},
		},
		"booleans, null, arrays and objects are JSON": {
			args: []string{"--sub", "a", "--claim", "ok=true", "--claim", "no=null", "--claim", `tags=["a","b"]`, "--claim", `o={"k":1}`},
			want: map[string]string{"ok": `true`, "no": `null`, "tags": `["a","b"]`, "o": `{"k":1}`},
		},
		"a quoted number is a string": {
			args: []string{"--sub", "a", "--claim", `zip="01234"`},
			want: map[string]string{"zip": `"01234"`},
		},
		"what is not one JSON value is a string": {
			args: []string{"--sub", "a", "--claim", "two=1 2", "--claim", "empty=", "--claim", "eq=a=b", "--claim", "broken=[1,"},
			want: map[string]string{"two": `"1 2"`, "empty": `""`, "eq": `"a=b"`, "broken": `"[1,"`},
		},
		"an empty --aud leaves aud out, a claim may set sub": {
			args: []string{"--sub", "a", "--aud", "", "--claim", "sub=b"},
			want: map[string]string{"sub": `"b"`, "aud": ""},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tok := mintToken(t, append([]string{"--key", keyFile}, tc.args...)...)
			claims := tokenPart(t, tok, 1)
			for claim, want := range tc.want {
				if got := string(claims[claim]); got != want {
					t.Errorf("claim %s = %s, want %s", claim, got, want)
				}
			}
		})
	}

	t.Run("the lifetime is --ttl and the header names the key", func(t *testing.T) {
		tok := mintToken(t, "--key", keyFile, "--sub", "a", "--ttl", "1h")
		var iat, exp int64
		c := tokenPart(t, tok, 1)
		if json.Unmarshal(c["iat"], &iat) != nil || json.Unmarshal(c["exp"], &exp) != nil || exp-iat != 3600 {
			t.Errorf("iat %s, exp %s: want one hour apart", c["iat"], c["exp"])
		}
		h := tokenPart(t, tok, 0)
		if string(h["alg"]) != `"EdDSA"` || len(h["kid"]) < 10 {
			t.Errorf("header %v: want alg EdDSA and the key's kid", h)
		}
	})
}

func TestTokenErrors(t *testing.T) {
	dir := t.TempDir()
	edKey := filepath.Join(dir, "ed.json")
	mintToken(t, "--key", edKey, "--sub", "a")
	tests := map[string]struct {
		args     []string
		code     int
		contains string
	}{
		"--sub is required":                    {[]string{"token", "--key", edKey}, 2, `"sub" not set`},
		"a claim without =":                    {[]string{"token", "--key", edKey, "--sub", "a", "--claim", "role"}, 2, `claim "role": want name=value`},
		"an Ed25519 key cannot sign ES256":     {[]string{"token", "--key", edKey, "--sub", "a", "--alg", "ES256"}, 2, "signs with EdDSA, not ES256"},
		"alg none is never made":               {[]string{"token", "keygen", "--key", filepath.Join(dir, "n.json"), "--alg", "none"}, 2, "never allowed"},
		"a damaged key file is reported":       {[]string{"token", "--key", writeFile(t, dir, "bad.json", `{"kty":`), "--sub", "a"}, 1, "bad.json"},
		"a public key is not a signing key":    {[]string{"token", "--key", writeFile(t, dir, "pub.json", `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"EdDSA"}`), "--sub", "a"}, 1, "no private key"},
		"serve-jwks refuses an HS secret":      {[]string{"token", "serve-jwks", "--key", writeFile(t, dir, "secret", strings.Repeat("s", 40))}, 2, "no public JWKS"},
		"serve-jwks reports a bad address":     {[]string{"token", "serve-jwks", "--key", edKey, "--addr", "256.0.0.1:1"}, 1, "serve-jwks"},
		"token takes no argument":              {[]string{"token", "--key", edKey, "--sub", "a", "extra"}, 2, "unknown command"},
		"keygen takes an algorithm it knows":   {[]string{"token", "keygen", "--key", filepath.Join(dir, "x.json"), "--alg", "HS1"}, 2, "unknown algorithm"},
		"token takes an algorithm it knows":    {[]string{"token", "--key", filepath.Join(dir, "new.json"), "--sub", "a", "--alg", "HS1"}, 2, `--alg "HS1": `},
		"token never makes an alg none key":    {[]string{"token", "--key", filepath.Join(dir, "none.json"), "--sub", "a", "--alg", "none"}, 2, "never allowed"},
		"an unknown token flag is a usage one": {[]string{"token", "--nope"}, 2, "unknown flag: --nope"},
		"a negative --ttl":                     {[]string{"token", "--key", edKey, "--sub", "a", "--ttl", "-5m"}, 2, `--ttl "-5m0s": must not be negative`},
		"a subcommand typo is suggested":       {[]string{"token", "keygn"}, 2, `did you mean "keygen"?`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := runCommand(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.contains) {
				t.Fatalf("exit code %d, want %d; stderr should contain %q:\n%s", code, tc.code, tc.contains, stderr)
			}
		})
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTokenKeygen(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "dev", "key.json")
	jwksFile := filepath.Join(dir, "dev", "dev-jwks.json")
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	keygen := func(args ...string) (int, string) {
		t.Helper()
		code, _, stderr := runCommand(t, append([]string{"token", "keygen"}, args...)...)
		return code, stderr
	}

	if code, stderr := keygen("--key", keyFile); code != 0 {
		t.Fatalf("keygen: exit code %d:\n%s", code, stderr)
	}
	first, firstJWKS := read(keyFile), read(jwksFile)
	if m := fileMode(t, keyFile); m != 0o600 {
		t.Errorf("key file mode %v, want 0600", m)
	}

	t.Run("it refuses to overwrite without --force", func(t *testing.T) {
		code, stderr := keygen("--key", keyFile, "--alg", "ES256")
		if code != 1 || !strings.Contains(stderr, "key file exists (use --force") {
			t.Fatalf("exit code %d, stderr:\n%s", code, stderr)
		}
		if read(keyFile) != first || read(jwksFile) != firstJWKS {
			t.Fatal("the refused keygen changed the files")
		}
	})

	t.Run("--force replaces the key and its JWKS", func(t *testing.T) {
		if code, stderr := keygen("--key", keyFile, "--alg", "ES256", "--force"); code != 0 {
			t.Fatalf("exit code %d:\n%s", code, stderr)
		}
		if read(keyFile) == first || !strings.Contains(read(jwksFile), `"alg":"ES256"`) {
			t.Fatalf("key or JWKS not replaced:\n%s", read(jwksFile))
		}
		if m := fileMode(t, keyFile); m != 0o600 {
			t.Errorf("replaced key file mode %v, want 0600", m)
		}
		tok := mintToken(t, "--key", keyFile, "--sub", "a")
		if h := tokenPart(t, tok, 0); string(h["alg"]) != `"ES256"` {
			t.Errorf("token header alg %s, want the key's ES256", h["alg"])
		}
	})

	t.Run("--jwks puts the JWKS elsewhere", func(t *testing.T) {
		other := filepath.Join(dir, "public", "keys.json")
		if code, stderr := keygen("--key", filepath.Join(dir, "rs", "key.json"), "--alg", "RS256", "--jwks", other); code != 0 {
			t.Fatalf("exit code %d:\n%s", code, stderr)
		}
		if !strings.Contains(read(other), `"kty":"RSA"`) {
			t.Fatalf("JWKS %s", read(other))
		}
	})

	t.Run("an HS256 secret verifies through a secretRef", func(t *testing.T) {
		secretFile := filepath.Join(dir, "hs", "secret")
		if code, stderr := keygen("--key", secretFile, "--alg", "HS256"); code != 0 {
			t.Fatalf("exit code %d:\n%s", code, stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "hs", "dev-jwks.json")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("an HS secret got a JWKS file: %v", err)
		}
		secretsDir := t.TempDir()
		writeFile(t, mkdir(t, filepath.Join(secretsDir, "shop", "auth")), "jwt-secret", read(secretFile))
		policyDir := t.TempDir()
		writeFile(t, policyDir, "p.yaml", `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: hs, namespace: shop}
spec:
  jwt:
    issuer: `+testIssuer+`
    secretRef: {name: auth, key: jwt-secret}
  rules:
    - name: all
      path: /**
`)
		for alg, want := range map[string]int{"HS256": 0, "HS384": 1} {
			tok := mintToken(t, "--key", secretFile, "--sub", "alice", "--iss", testIssuer, "--alg", alg)
			code, stdout, stderr := runCommand(t, "check", "--policy-dir", policyDir, "--secrets-dir", secretsDir, "--path", "/x", "--token", tok)
			if code != want {
				t.Errorf("%s token: exit code %d, want %d; stdout:\n%s\nstderr:\n%s", alg, code, want, stdout, stderr)
			}
		}
	})
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestTokenServeJWKS(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key.json")
	cmd := newRootCommand()
	var stderr lockedBuffer
	cmd.SetOut(io.Discard)
	cmd.SetErr(&stderr)
	cmd.SetArgs([]string{"token", "serve-jwks", "--key", keyFile, "--addr", "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	listening := regexp.MustCompile(`at (http://127\.0\.0\.1:\d+)/api/auth/jwks`)
	var base string
	for deadline := time.Now().Add(10 * time.Second); base == ""; {
		if m := listening.FindStringSubmatch(stderr.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve-jwks ended early: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve-jwks did not say where it listens:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	if !strings.Contains(stderr.String(), "generated a EdDSA key") {
		t.Errorf("a missing key was not generated:\n%s", stderr.String())
	}
	jwks, err := os.ReadFile(filepath.Join(filepath.Dir(keyFile), "dev-jwks.json"))
	if err != nil {
		t.Fatal(err)
	}

	tests := map[string]struct {
		path   string
		status int
	}{
		"Better Auth's path":  {"/api/auth/jwks", http.StatusOK},
		"the well-known path": {"/.well-known/jwks.json", http.StatusOK},
		"anything else":       {"/api/auth/other", http.StatusNotFound},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp, err := http.Get(base + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != http.StatusOK {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			if strings.TrimSpace(string(body)) != strings.TrimSpace(string(jwks)) {
				t.Errorf("served %s, want the key's JWKS %s", body, jwks)
			}
		})
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve-jwks returned %v after its context ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve-jwks did not stop when its context ended")
	}
	if _, err := http.Get(base + "/api/auth/jwks"); err == nil {
		t.Error("the server still answers after stopping")
	}
}
