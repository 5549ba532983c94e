package jwt

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

// FuzzVerify feeds arbitrary strings to Verify. It must never panic, every
// error must be an *Error with a known reason, and an accepted token must
// carry a valid Ed25519 signature by the one configured key, checked here
// independently of jwx.
func FuzzVerify(f *testing.F) {
	ed := jwttest.NewEd25519(f)
	attacker := jwttest.NewEd25519(f)
	m, clock, _ := newTestManager(f, Options{})
	v := mustVerifier(f, m, Config{Issuer: testIssuer, InlineJWKS: ed.JWKS(), ClockSkew: time.Minute})
	now := clock.Now()
	valid := ed.Mint(f, claims(now))
	for _, s := range []string{
		valid,
		ed.MintHeader(f, map[string]any{"alg": "Ed25519"}, claims(now)),
		attacker.WithKid(ed.Kid()).Mint(f, claims(now)),
		attacker.MintHeader(f, map[string]any{"jwk": attacker.PublicJWK(f)}, claims(now)),
		jwttest.Unsigned(f, "none", claims(now)),
		jwttest.Sign(f, "HS256", []byte(ed.JWKS()), map[string]any{"alg": "HS256", "kid": ed.Kid()}, claims(now)),
		ed.MintHeader(f, map[string]any{"crit": []string{"x"}, "x": 1}, claims(now)),
		ed.MintHeader(f, map[string]any{"crit": []string{}}, claims(now)),
		signRaw(f, ed, `{"alg":"EdDSA","alg":"none"}`, `{"exp":1}`),
		signRaw(f, ed, `{"alg":"EdDSA","kid":"`+ed.Kid()+`"}`, `{"sub":"a","sub":"b","exp":9999999999,"iss":"`+testIssuer+`"}`),
		nestedHeaderToken(f, ed.Kid(), now),
		"", ".", "..", "a.b.c", "e30.e30.", valid + ".", strings.Repeat("A", 100),
	} {
		f.Add(s)
	}
	known := map[Reason]bool{}
	for _, r := range Reasons() {
		known[r] = true
	}
	pub := ed.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, raw string) {
		id, err := v.Verify(context.Background(), raw)
		if err != nil {
			if !known[ReasonOf(err)] {
				t.Fatalf("error without a known reason: %v", err)
			}
			return
		}
		if id == nil {
			t.Fatal("nil identity without error")
		}
		i := strings.LastIndexByte(raw, '.')
		sig, decErr := base64.RawURLEncoding.DecodeString(raw[i+1:])
		if decErr != nil || !ed25519.Verify(pub, []byte(raw[:i]), sig) {
			t.Fatalf("accepted a token not signed by the configured key")
		}
	})
}

// FuzzScanObject checks the structural scanner against encoding/json: what
// it accepts is one valid JSON object whose members it reports exactly as
// encoding/json decodes them, without a repeated name, and it never
// accepts invalid JSON or invalid UTF-8.
func FuzzScanObject(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a":{"b":[1,{"c":null}]}}`, ` {"a":"x\"y"} `,
		`{"a":1}{}`, `[1]`, `{"a":-0.5e+3,"b":true,"c":false}`, `{"a":"\ud800"}`, "{\"a\":\"\xff\"}", `{"a":01}`,
		`{"k0":0,"k1":0,"k2":0,"k3":0,"k4":0,"k5":0,"k6":0,"k7":0,"k8":0,"k0":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var names []string
		err := scanObject(data, jsonLimits{depth: 64}, func(name, _ []byte) error {
			names = append(names, string(name))
			return nil
		})
		if err != nil {
			return
		}
		if !json.Valid(data) || !utf8.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("accepted %q, which is not an object: %v", data, err)
		}
		if len(m) != len(names) {
			t.Fatalf("accepted %q with a repeated name (%d members, %d distinct)", data, len(names), len(m))
		}
		for _, n := range names {
			if _, ok := m[n]; !ok {
				t.Fatalf("reported member %q that encoding/json does not see in %q", n, data)
			}
		}
	})
}
