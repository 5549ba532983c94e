package jwt

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

// TestVerify is the table of every reason code and attack class. Each case
// mints its token in the test. At the end it checks that no token part
// reached a log line or an error message.
func TestVerify(t *testing.T) {
	ed := jwttest.NewEd25519(t)
	es := jwttest.NewES256(t)
	rs := jwttest.NewRS256(t)
	hs := jwttest.NewHS256(t)
	attacker := jwttest.NewEd25519(t)
	attackerSameKid := attacker.WithKid(ed.Kid())

	// A server an attacker points jku / x5u at: it must never be contacted.
	var attackerHits atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		attackerHits.Add(1)
		_, _ = w.Write([]byte(attacker.JWKS()))
	}))
	defer evil.Close()

	m, clock, logs := newTestManager(t, Options{
		CacheSize: -1, // every case exercises the full path
		Secrets: secretFunc(func(_ context.Context, ref SecretRef) ([]byte, error) {
			if ref.Name == "missing" {
				return nil, errors.New("secret not found")
			}
			return hs.Secret(), nil
		}),
	})
	now := clock.Now()
	inline := jwttest.JWKS(ed, es, rs)
	verifiers := map[string]*Verifier{
		"jwks":    mustVerifier(t, m, Config{Issuer: testIssuer, Audiences: []string{"api", "other-api"}, InlineJWKS: inline, ClockSkew: 30 * time.Second}),
		"noaud":   mustVerifier(t, m, Config{Issuer: testIssuer, InlineJWKS: inline, ClockSkew: 30 * time.Second}),
		"edonly":  mustVerifier(t, m, Config{Issuer: testIssuer, InlineJWKS: inline, Algorithms: []string{"Ed25519"}, ClockSkew: 30 * time.Second}),
		"hs":      mustVerifier(t, m, Config{Issuer: testIssuer, Audiences: []string{"api"}, Secret: &SecretRef{Namespace: "ns", Name: "auth", Key: "jwt"}, ClockSkew: 30 * time.Second}),
		"hsbroke": mustVerifier(t, m, Config{Issuer: testIssuer, Secret: &SecretRef{Namespace: "ns", Name: "missing", Key: "jwt"}}),
	}

	valid := ed.Mint(t, claims(now))
	parts := strings.Split(valid, ".")
	otherPayload := strings.Split(ed.Mint(t, claims(now, set("sub", "admin"))), ".")[1]
	selfSigned := selfSignedCert(t, attacker.Private().(ed25519.PrivateKey))

	type tc struct {
		verifier string // key of verifiers; "" = "jwks"
		token    string
		want     Reason // "" = accepted
		wantSub  string
	}
	cases := map[string]tc{
		"a valid EdDSA token is accepted":                      {token: valid, wantSub: "user-1"},
		"a valid ES256 token is accepted":                      {token: es.Mint(t, claims(now)), wantSub: "user-1"},
		"a valid RS256 token is accepted":                      {token: rs.Mint(t, claims(now)), wantSub: "user-1"},
		"a valid HS256 token is accepted":                      {verifier: "hs", token: hs.Mint(t, claims(now)), wantSub: "user-1"},
		"header alg Ed25519 is accepted as EdDSA":              {token: ed.MintHeader(t, map[string]any{"alg": "Ed25519", "kid": ed.Kid()}, claims(now)), wantSub: "user-1"},
		"policy alg Ed25519 accepts an EdDSA token":            {verifier: "edonly", token: valid, wantSub: "user-1"},
		"aud as an array containing one audience is accepted":  {token: ed.Mint(t, claims(now, set("aud", []string{"x", "other-api"}))), wantSub: "user-1"},
		"any aud is accepted when no audience is configured":   {verifier: "noaud", token: ed.Mint(t, claims(now, set("aud", "whatever"))), wantSub: "user-1"},
		"a token without kid is checked against the key set":   {token: ed.MintHeader(t, map[string]any{}, claims(now)), wantSub: "user-1"},
		"exp just past but within the clock skew is accepted":  {token: ed.Mint(t, claims(now, set("exp", now.Add(-10*time.Second).Unix()))), wantSub: "user-1"},
		"nbf slightly ahead but within the skew is accepted":   {token: ed.Mint(t, claims(now, set("nbf", now.Add(10*time.Second).Unix()))), wantSub: "user-1"},
		"an empty token is missing":                            {token: "", want: ReasonMissing},
		"a token over 16 KiB is too large":                     {token: valid + strings.Repeat("A", MaxTokenSize), want: ReasonTooLarge},
		"a 1 MiB token is too large":                           {token: strings.Repeat("a.", 1<<19), want: ReasonTooLarge},
		"a token with three dots is malformed":                 {token: valid + ".AAAA", want: ReasonMalformed},
		"many dots are malformed":                              {token: strings.Repeat(".", 100), want: ReasonMalformed},
		"a token with one dot is malformed":                    {token: parts[0] + "." + parts[1], want: ReasonMalformed},
		"garbage segments are malformed":                       {token: "not.a.jwt", want: ReasonMalformed},
		"a JSON-serialised JWS is malformed":                   {token: `{"payload":"e30","signatures":[{"protected":"e30","signature":"AA"}]}..`, want: ReasonMalformed},
		"a signed non-object payload is malformed":             {token: signRawPayload(t, ed, "[1,2]"), want: ReasonMalformed},
		"a signed token without exp is missing_exp":            {token: ed.MintHeader(t, map[string]any{"kid": ed.Kid()}, claims(now, del("exp"))), want: ReasonMissingExp},
		"a signed token with a string exp is malformed":        {token: ed.Mint(t, claims(now, set("exp", "tomorrow"))), want: ReasonMalformed},
		"a tampered payload is a bad signature":                {token: parts[0] + "." + otherPayload + "." + parts[2], want: ReasonBadSignature},
		"a truncated signature is a bad signature":             {token: valid[:len(valid)-2], want: ReasonBadSignature},
		"same kid signed by another key is a bad signature":    {token: attackerSameKid.Mint(t, claims(now)), want: ReasonBadSignature},
		"alg none is not allowed":                              {token: jwttest.Unsigned(t, "none", claims(now)), want: ReasonAlgNotAllowed},
		"alg None is not allowed":                              {token: jwttest.Unsigned(t, "None", claims(now)), want: ReasonAlgNotAllowed},
		"alg NONE with a signature is not allowed":             {token: jwttest.Unsigned(t, "NONE", claims(now)) + "c2ln", want: ReasonAlgNotAllowed},
		"alg none against an HS verifier is not allowed":       {verifier: "hs", token: jwttest.Unsigned(t, "none", claims(now)), want: ReasonAlgNotAllowed},
		"HS256 signed with the RSA public key PEM is rejected": {token: jwttest.Sign(t, "HS256", rs.PublicKeyPEM(t), map[string]any{"alg": "HS256", "kid": rs.Kid()}, claims(now)), want: ReasonAlgNotAllowed},
		"HS256 signed with the public JWK bytes is rejected":   {token: jwttest.Sign(t, "HS256", []byte(rs.PublicJWK(t)), map[string]any{"alg": "HS256", "kid": rs.Kid()}, claims(now)), want: ReasonAlgNotAllowed},
		"HS256 with the public key against an HS verifier":     {verifier: "hs", token: jwttest.Sign(t, "HS256", rs.PublicKeyPEM(t), map[string]any{"alg": "HS256"}, claims(now)), want: ReasonBadSignature},
		"RS256 against an HS verifier is not allowed":          {verifier: "hs", token: rs.Mint(t, claims(now)), want: ReasonAlgNotAllowed},
		"an unknown alg is not allowed":                        {token: jwttest.Sign(t, "HS256", []byte("k"), map[string]any{"alg": "HS1024", "kid": ed.Kid()}, claims(now)), want: ReasonAlgNotAllowed},
		"an alg outside the policy list is not allowed":        {verifier: "edonly", token: rs.Mint(t, claims(now)), want: ReasonAlgNotAllowed},
		"PS256 with a JWK whose alg is RS256 is not allowed":   {token: jwttest.Sign(t, "PS256", rs.Private(), map[string]any{"alg": "PS256", "kid": rs.Kid()}, claims(now)), want: ReasonAlgNotAllowed},
		"ES256 naming the Ed25519 key is not allowed":          {token: jwttest.Sign(t, "ES256", es.Private(), map[string]any{"alg": "ES256", "kid": ed.Kid()}, claims(now)), want: ReasonAlgNotAllowed},
		"an unknown kid is unknown_kid":                        {token: attacker.Mint(t, claims(now)), want: ReasonUnknownKid},
		"an embedded jwk with its own kid is never trusted":    {token: attacker.MintHeader(t, map[string]any{"kid": attacker.Kid(), "jwk": attacker.PublicJWK(t)}, claims(now)), want: ReasonUnknownKid},
		"an embedded jwk without kid is never trusted":         {token: attacker.MintHeader(t, map[string]any{"jwk": attacker.PublicJWK(t)}, claims(now)), want: ReasonBadSignature},
		"an embedded jwk under a known kid is never trusted":   {token: attacker.MintHeader(t, map[string]any{"kid": ed.Kid(), "jwk": attacker.PublicJWK(t)}, claims(now)), want: ReasonBadSignature},
		"a jku pointing elsewhere is never fetched":            {token: attacker.MintHeader(t, map[string]any{"kid": attacker.Kid(), "jku": evil.URL}, claims(now)), want: ReasonUnknownKid},
		"a jku without kid is never fetched":                   {token: attacker.MintHeader(t, map[string]any{"jku": evil.URL}, claims(now)), want: ReasonBadSignature},
		"an x5u pointing elsewhere is never fetched":           {token: attacker.MintHeader(t, map[string]any{"x5u": evil.URL}, claims(now)), want: ReasonBadSignature},
		"an x5c chain is never trusted":                        {token: attacker.MintHeader(t, map[string]any{"x5c": []string{selfSigned}}, claims(now)), want: ReasonBadSignature},
		"an unknown crit header is rejected":                   {token: ed.MintHeader(t, map[string]any{"kid": ed.Kid(), "crit": []string{"exp"}, "exp": 1}, claims(now)), want: ReasonUnsupportedCrit},
		"crit b64 (unencoded payload) is rejected":             {token: ed.MintHeader(t, map[string]any{"kid": ed.Kid(), "crit": []string{"b64"}, "b64": true}, claims(now)), want: ReasonUnsupportedCrit},
		"b64 without crit is rejected":                         {token: ed.MintHeader(t, map[string]any{"kid": ed.Kid(), "b64": true}, claims(now)), want: ReasonUnsupportedCrit},
		"an expired token is expired":                          {token: ed.Mint(t, claims(now, set("exp", now.Add(-31*time.Second).Unix()))), want: ReasonExpired},
		"exp exactly at now minus skew is expired":             {token: ed.Mint(t, claims(now, set("exp", now.Add(-30*time.Second).Unix()))), want: ReasonExpired},
		"an expired HS token is expired":                       {verifier: "hs", token: hs.Mint(t, claims(now, set("exp", now.Add(-time.Hour).Unix()))), want: ReasonExpired},
		"nbf beyond the skew is not yet valid":                 {token: ed.Mint(t, claims(now, set("nbf", now.Add(time.Minute).Unix()))), want: ReasonNotYetValid},
		"iat in the future beyond the skew is not yet valid":   {token: ed.Mint(t, claims(now, set("iat", now.Add(time.Minute).Unix()))), want: ReasonNotYetValid},
		"another issuer is a bad issuer":                       {token: ed.Mint(t, claims(now, set("iss", "https://evil.test"))), want: ReasonBadIssuer},
		"an issuer with a trailing slash is a bad issuer":      {token: ed.Mint(t, claims(now, set("iss", testIssuer+"/"))), want: ReasonBadIssuer},
		"a missing issuer is a bad issuer":                     {token: ed.Mint(t, claims(now, del("iss"))), want: ReasonBadIssuer},
		"another audience is a bad audience":                   {token: ed.Mint(t, claims(now, set("aud", "evil"))), want: ReasonBadAudience},
		"an audience array without a match is a bad audience":  {token: ed.Mint(t, claims(now, set("aud", []string{"a", "b"}))), want: ReasonBadAudience},
		"a missing audience is a bad audience":                 {token: ed.Mint(t, claims(now, del("aud"))), want: ReasonBadAudience},
		"an HS token for another audience is a bad audience":   {verifier: "hs", token: hs.Mint(t, claims(now, set("aud", "evil"))), want: ReasonBadAudience},
		"an unresolvable secret makes keys unavailable":        {verifier: "hsbroke", token: hs.Mint(t, claims(now)), want: ReasonKeysUnavailable},
		"an HS token signed with another secret is a bad sig":  {verifier: "hs", token: jwttest.NewHS256(t).Mint(t, claims(now)), want: ReasonBadSignature},
		"a numeric sub is malformed":                           {token: ed.Mint(t, claims(now, set("sub", 42))), want: ReasonMalformed},
		"an aud of the wrong type is malformed":                {token: ed.Mint(t, claims(now, set("aud", 7))), want: ReasonMalformed},
		"a payload with trailing data is malformed":            {token: signRawPayload(t, ed, `{"exp":1}{}`), want: ReasonMalformed},
		"a header that is not JSON is malformed":               {token: base64.RawURLEncoding.EncodeToString([]byte("{")) + "." + parts[1] + "." + parts[2], want: ReasonMalformed},
	}
	var errTexts []string
	var tokens []string
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			v := verifiers[c.verifier]
			if c.verifier == "" {
				v = verifiers["jwks"]
			}
			tokens = append(tokens, c.token)
			id, err := v.Verify(context.Background(), c.token)
			if c.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if id.Subject != c.wantSub || id.Issuer != testIssuer {
					t.Fatalf("identity = %+v", id)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want %s", c.want)
			}
			errTexts = append(errTexts, err.Error())
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error", err)
			}
			if got := ReasonOf(err); got != c.want {
				t.Fatalf("reason = %q (%v), want %q", got, err, c.want)
			}
		})
	}
	if n := attackerHits.Load(); n != 0 {
		t.Errorf("the attacker's jku/x5u server was contacted %d times", n)
	}
	assertNoTokenLeak(t, tokens, logs.String()+"\n"+strings.Join(errTexts, "\n"))
}

// assertNoTokenLeak fails when any segment of any token (or a 16-byte
// piece of a segment) appears in text.
func assertNoTokenLeak(t *testing.T, tokens []string, text string) {
	t.Helper()
	if leaks(tokens, text) {
		t.Fatal("token content found in logs or errors")
	}
}

// TestNoTokenInLogsOrErrors checks the leak detector itself and the log
// output of a remote failure path.
func TestNoTokenInLogsOrErrors(t *testing.T) {
	ed := jwttest.NewEd25519(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	m, clock, logs := newTestManager(t, Options{})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, JWKSURI: srv.URL})
	tok := ed.Mint(t, claims(clock.Now()))
	_, err := v.Verify(context.Background(), tok)
	if ReasonOf(err) != ReasonKeysUnavailable {
		t.Fatalf("reason = %q, want keys_unavailable", ReasonOf(err))
	}
	assertNoTokenLeak(t, []string{tok}, logs.String()+err.Error())
	if !strings.Contains(logs.String(), "jwks fetch failed") {
		t.Fatalf("expected the fetch failure to be logged, got %q", logs.String())
	}
	// The detector must be able to fail.
	if !leaks([]string{tok}, "prefix "+tok[10:40]+" suffix") {
		t.Fatal("leak detector does not detect a token piece")
	}
}

func leaks(tokens []string, text string) bool {
	for _, tok := range tokens {
		for _, seg := range strings.Split(tok, ".") {
			for i := 0; i+16 <= len(seg); i += 16 {
				if strings.Contains(text, seg[i:i+16]) {
					return true
				}
			}
		}
	}
	return false
}

func TestConfigValidation(t *testing.T) {
	ed := jwttest.NewEd25519(t)
	m, _, _ := newTestManager(t, Options{Secrets: NewDirSecrets(t.TempDir(), nil)})
	cases := map[string]Config{
		"issuer is required":                 {InlineJWKS: ed.JWKS()},
		"a key source is required":           {Issuer: testIssuer},
		"two key sources are rejected":       {Issuer: testIssuer, InlineJWKS: ed.JWKS(), JWKSURI: "https://x.test/jwks"},
		"alg none is rejected":               {Issuer: testIssuer, InlineJWKS: ed.JWKS(), Algorithms: []string{"none"}},
		"an unknown alg is rejected":         {Issuer: testIssuer, InlineJWKS: ed.JWKS(), Algorithms: []string{"XS256"}},
		"HS256 with a key set is rejected":   {Issuer: testIssuer, InlineJWKS: ed.JWKS(), Algorithms: []string{"HS256"}},
		"RS256 with a secret is rejected":    {Issuer: testIssuer, Secret: &SecretRef{Namespace: "ns", Name: "n", Key: "k"}, Algorithms: []string{"RS256"}},
		"skew above 5m is rejected":          {Issuer: testIssuer, InlineJWKS: ed.JWKS(), ClockSkew: 6 * time.Minute},
		"a non-http jwksURI is rejected":     {Issuer: testIssuer, JWKSURI: "file:///etc/passwd"},
		"discovery needs an http issuer":     {Issuer: "issuer", Discovery: true},
		"an inline JWKS with no usable key":  {Issuer: testIssuer, InlineJWKS: `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`},
		"an inline JWKS that is not JSON":    {Issuer: testIssuer, InlineJWKS: `{"keys":`},
		"a secret without a key is rejected": {Issuer: testIssuer, Secret: &SecretRef{Namespace: "ns", Name: "n"}},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := m.Verifier(cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := NewManager(Options{}).Verifier(Config{Issuer: testIssuer, Secret: &SecretRef{Namespace: "ns", Name: "n", Key: "k"}}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("secret without resolver: %v", err)
	}
}

func TestParseAlgorithm(t *testing.T) {
	for in, want := range map[string]string{"Ed25519": "EdDSA", "EdDSA": "EdDSA", "ES256": "ES256", "HS512": "HS512", "PS384": "PS384"} {
		if got, err := ParseAlgorithm(in); err != nil || got != want {
			t.Errorf("ParseAlgorithm(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"none", "None", "NONE", "", "es256", "HS1024", "ES256K"} {
		if got, err := ParseAlgorithm(in); err == nil {
			t.Errorf("ParseAlgorithm(%q) = %q, want error", in, got)
		}
	}
}

// TestIdentityClaims: an Identity answers for sub, iss and the claims its
// Config keeps, in canonical form, and for nothing else (issue 13 §6).
func TestIdentityClaims(t *testing.T) {
	ed := jwttest.NewEd25519(t)
	m, clock, _ := newTestManager(t, Options{})
	kept := []string{"n", "e", "f", "neg", "b", "roles", "role", "obj", "nul", "absent", "empty", "sub", "e"}
	v := mustVerifier(t, m, Config{Issuer: testIssuer, InlineJWKS: ed.JWKS(), Claims: kept})
	payload := `{"sub":"u1","iss":"` + testIssuer + `","exp":` + jsonInt(clock.Now().Add(time.Hour).Unix()) +
		`,"aud":["a","b"],"n":12345678901234567890,"e":1e3,"f":1.5,"neg":-0,"b":true,"roles":["admin",1,"ops"],"role":"admin","obj":{"k":["v"]},"nul":null,"empty":[],"email":"u1@example.com"}`
	id, err := v.Verify(context.Background(), signRawPayload(t, ed, payload))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"sub": "u1", "iss": testIssuer, "n": "12345678901234567890", "e": "1000", "f": "1.5", "neg": "0", "b": "true", "role": "admin"} {
		if got, ok := id.ClaimString(name); !ok || got != want {
			t.Errorf("ClaimString(%q) = %q, %t; want %q", name, got, ok, want)
		}
	}
	for _, name := range []string{"obj", "roles", "nul", "absent", "empty", "email", "aud", "exp"} {
		if got, ok := id.ClaimString(name); ok {
			t.Errorf("ClaimString(%q) = %q, want false", name, got)
		}
	}
	for name, want := range map[string][]string{"roles": {"admin", "ops"}, "role": {"admin"}, "sub": {"u1"}, "empty": {}} {
		if got := id.ClaimStrings(name); !slices.Equal(got, want) || got == nil {
			t.Errorf("ClaimStrings(%q) = %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"obj", "n", "b", "nul", "absent", "email"} {
		if got := id.ClaimStrings(name); got != nil {
			t.Errorf("ClaimStrings(%q) = %q, want nil", name, got)
		}
	}
	if !id.Expiry().Equal(time.Unix(clock.Now().Add(time.Hour).Unix(), 0)) {
		t.Errorf("Expiry = %s", id.Expiry())
	}
}

// TestCacheKeepsPerClaimsSchema: verifiers that keep different claims do
// not share cached identities.
func TestCacheKeepsPerClaimsSchema(t *testing.T) {
	ed := jwttest.NewEd25519(t)
	m, clock, _ := newTestManager(t, Options{})
	a := mustVerifier(t, m, Config{Issuer: testIssuer, InlineJWKS: ed.JWKS(), Claims: []string{"role"}})
	b := mustVerifier(t, m, Config{Issuer: testIssuer, InlineJWKS: ed.JWKS(), Claims: []string{"plan"}})
	tok := ed.Mint(t, claims(clock.Now(), set("role", "admin"), set("plan", "gold")))
	ida, err := a.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	idb, err := b.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := ida.ClaimString("role"); r != "admin" {
		t.Errorf("a: role = %q", r)
	}
	if p, _ := idb.ClaimString("plan"); p != "gold" {
		t.Errorf("b: plan = %q (a cached identity of another schema?)", p)
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// signRawPayload signs a literal payload (not necessarily JSON) with k.
func signRawPayload(t *testing.T, k *jwttest.Key, payload string) string {
	t.Helper()
	hdr, _ := json.Marshal(map[string]any{"alg": k.Alg(), "kid": k.Kid()})
	input := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	sig := ed25519.Sign(k.Private().(ed25519.PrivateKey), []byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func selfSignedCert(t *testing.T, priv ed25519.PrivateKey) string {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "evil"}, NotBefore: time.Unix(0, 0), NotAfter: time.Unix(4_000_000_000, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}
