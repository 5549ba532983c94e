package jwt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

func writeSecret(t *testing.T, dir string, data string, mtime time.Time) {
	t.Helper()
	p := filepath.Join(dir, "shop", "auth", "jwt")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	// Written aside and renamed into place, as the kubelet swaps a Secret
	// volume's files: a poller never reads a half-written secret.
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

func TestDirSecretsRotation(t *testing.T) {
	dir := t.TempDir()
	secretA := "secret-A-0123456789abcdefghijklmnopqrstuvwxyz"
	secretB := "secret-B-0123456789abcdefghijklmnopqrstuvwxyz" // same size: only mtime changes
	writeSecret(t, dir, secretA, time.Unix(1000, 0))
	clock := newFakeClock()
	m, _, logs := newTestManager(t, Options{
		Now:                clock.Now,
		Secrets:            NewDirSecrets(dir, clock.Now),
		SecretPollInterval: 5 * time.Millisecond,
	})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, Secret: &SecretRef{Namespace: "shop", Name: "auth", Key: "jwt"}, Algorithms: []string{"HS256", "HS512"}})
	ctx := context.Background()
	mint := func(secret, alg string) string {
		return jwttest.Sign(t, alg, []byte(secret), map[string]any{"alg": alg}, claims(clock.Now()))
	}
	tokA := mint(secretA, "HS256")
	if _, err := v.Verify(ctx, tokA); err != nil {
		t.Fatalf("secret A: %v", err)
	}
	if _, err := v.Verify(ctx, mint(secretA, "HS512")); err != nil {
		t.Fatalf("secret A, HS512: %v", err)
	}
	tokB := mint(secretB, "HS256")
	if _, err := v.Verify(ctx, tokB); ReasonOf(err) != ReasonBadSignature {
		t.Fatalf("secret B before rotation: %v", err)
	}

	writeSecret(t, dir, secretB, time.Unix(2000, 0))
	clock.Advance(2 * time.Second) // DirSecrets re-stats at most once a second
	eventually(t, 10*time.Second, "the rotated secret", func() bool {
		_, err := v.Verify(ctx, tokB)
		return err == nil
	})
	// tokA sat in the verified-token cache; the rotation revoked it.
	if _, err := v.Verify(ctx, tokA); ReasonOf(err) != ReasonBadSignature {
		t.Fatalf("secret A after rotation: %v, want bad_signature", err)
	}
	assertNoTokenLeak(t, []string{tokA, tokB}, logs.String())
	// The secret itself must not be logged either.
	if leaks([]string{secretA, secretB}, logs.String()) {
		t.Fatal("secret value in logs")
	}
}

func TestDirSecretsRejectsTraversal(t *testing.T) {
	d := NewDirSecrets(t.TempDir(), nil)
	for _, ref := range []SecretRef{
		{Namespace: "..", Name: "x", Key: "y"}, {Namespace: "ns", Name: "../..", Key: "k"}, {Namespace: "ns", Name: "n", Key: "a/b"},
		{Namespace: "ns", Name: "", Key: "k"}, {Namespace: "ns", Name: "n", Key: "."},
	} {
		if _, err := d.Secret(context.Background(), ref); err == nil {
			t.Errorf("Secret(%+v) succeeded", ref)
		}
	}
}

func TestShortSecretIsUnavailable(t *testing.T) {
	dir := t.TempDir()
	writeSecret(t, dir, "short", time.Unix(1000, 0))
	m, clock, _ := newTestManager(t, Options{Secrets: NewDirSecrets(dir, nil)})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, Secret: &SecretRef{Namespace: "shop", Name: "auth", Key: "jwt"}})
	tok := jwttest.Sign(t, "HS256", []byte("short"), map[string]any{"alg": "HS256"}, claims(clock.Now()))
	if _, err := v.Verify(context.Background(), tok); ReasonOf(err) != ReasonKeysUnavailable {
		t.Fatalf("short secret: %v, want keys_unavailable", err)
	}
}

// TestSecretCacheMissesDoNotCallTheResolver (issue 12 §4): a verified-token
// cache miss reads the secret the poller published; it never takes the
// resolver's lock or stats a file. Before the first resolution finishes a
// request waits for it, once; a secret that cannot be resolved is an error
// without a resolver call per request.
func TestSecretCacheMissesDoNotCallTheResolver(t *testing.T) {
	hs := jwttest.NewHS256(t)
	var calls atomic.Int64
	resolver := secretFunc(func(_ context.Context, ref SecretRef) ([]byte, error) {
		calls.Add(1)
		if ref.Name == "missing" {
			return nil, errors.New("secret not found")
		}
		return hs.Secret(), nil
	})
	m, clock, _ := newTestManager(t, Options{CacheSize: -1, Secrets: resolver, SecretPollInterval: time.Hour})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, Secret: &SecretRef{Namespace: "ns", Name: "auth", Key: "jwt"}})
	broken := mustVerifier(t, m, Config{Issuer: testIssuer, Secret: &SecretRef{Namespace: "ns", Name: "missing", Key: "jwt"}})
	ctx := context.Background()
	if err := v.WaitKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if err := broken.WaitKeys(ctx); err == nil || !strings.Contains(err.Error(), "secret not found") {
		t.Fatalf("WaitKeys of a missing secret: %v", err)
	}
	before := calls.Load()
	for i := range 200 {
		tok := hs.Mint(t, claims(clock.Now(), set("n", i))) // distinct tokens: every one a cache miss
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if _, err := broken.Verify(ctx, tok); ReasonOf(err) != ReasonKeysUnavailable {
			t.Fatalf("missing secret: %v, want keys_unavailable", err)
		}
	}
	if n := calls.Load() - before; n != 0 {
		t.Fatalf("400 verifications called the resolver %d times, want 0 (the poller's job)", n)
	}
}

// TestDeletedSecretIsRevoked: a secret that is deleted (the resolver says
// ErrSecretNotFound, or its file is removed) is revoked — tokens it
// signed, cached ones too, are keys_unavailable, and KeysChanged says so
// — until it is back; any other failure keeps the key, as a JWKS outage
// does.
func TestDeletedSecretIsRevoked(t *testing.T) {
	hs := jwttest.NewHS256(t)
	ref := SecretRef{Namespace: "shop", Name: "auth", Key: "jwt"}
	type fixture struct {
		resolver       SecretResolver
		remove, create func()
	}
	mapFixture := func(failure error) fixture {
		var gone atomic.Bool
		return fixture{
			resolver: secretFunc(func(context.Context, SecretRef) ([]byte, error) {
				if gone.Load() {
					return nil, failure
				}
				return hs.Secret(), nil
			}),
			remove: func() { gone.Store(true) },
			create: func() { gone.Store(false) },
		}
	}
	dirFixture := func() fixture {
		dir := t.TempDir()
		write := func() { writeSecret(t, dir, string(hs.Secret()), time.Now()) }
		write()
		return fixture{
			resolver: NewDirSecrets(dir, nil),
			remove: func() {
				if err := os.Remove(filepath.Join(dir, "shop", "auth", "jwt")); err != nil {
					t.Fatal(err)
				}
			},
			create: write,
		}
	}
	tests := map[string]struct {
		fixture fixture
		revoked bool
	}{
		"a Secret deleted from the cluster":  {mapFixture(fmt.Errorf("secret %s: %w", ref, ErrSecretNotFound)), true},
		"a secret file removed":              {dirFixture(), true},
		"a failure to read it keeps the key": {mapFixture(errors.New("secret store: timeout")), false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m, _, logs := newTestManager(t, Options{Now: time.Now, Secrets: tc.fixture.resolver, SecretPollInterval: 10 * time.Millisecond})
			v := mustVerifier(t, m, Config{Issuer: testIssuer, Secret: &ref})
			ctx := context.Background()
			tok := hs.Mint(t, claims(time.Now()))
			if _, err := v.Verify(ctx, tok); err != nil {
				t.Fatalf("before: %v", err)
			}
			changed := v.KeysChanged()
			if changed == nil {
				t.Fatal("a secret's Verifier has no KeysChanged")
			}

			tc.fixture.remove()
			if !tc.revoked {
				eventually(t, 5*time.Second, "the failure logged", func() bool { return strings.Contains(logs.String(), "keeping previous value") })
				if _, err := v.Verify(ctx, tok); err != nil {
					t.Fatalf("after a failure to read the secret: %v, want the key kept", err)
				}
				return
			}
			select {
			case <-changed:
			case <-time.After(5 * time.Second):
				t.Fatal("KeysChanged not closed when the secret was deleted")
			}
			if _, err := v.Verify(ctx, tok); ReasonOf(err) != ReasonKeysUnavailable {
				t.Fatalf("a cached token after the delete: %v, want keys_unavailable", err)
			}
			if _, err := v.Verify(ctx, hs.Mint(t, claims(time.Now(), set("n", 2)))); ReasonOf(err) != ReasonKeysUnavailable {
				t.Fatalf("a new token after the delete: %v, want keys_unavailable", err)
			}
			if err := v.WaitKeys(ctx); err == nil {
				t.Fatal("WaitKeys after the delete: no error")
			}

			changed = v.KeysChanged()
			tc.fixture.create()
			select {
			case <-changed:
			case <-time.After(5 * time.Second):
				t.Fatal("KeysChanged not closed when the secret came back")
			}
			if _, err := v.Verify(ctx, tok); err != nil {
				t.Fatalf("after the secret came back: %v", err)
			}
		})
	}
}
