package jwt

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

// signRaw signs a literal header and payload (any bytes) with an Ed25519 key.
func signRaw(t testing.TB, k *jwttest.Key, header, payload string) string {
	t.Helper()
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	sig := ed25519.Sign(k.Private().(ed25519.PrivateKey), []byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestVerifyStrictJWS covers issue 9 §8 and issue 13 §2: what parsers
// disagree on (duplicate names, base64 variants, an empty crit) and what
// costs more to parse than to reject (deep nesting, many header members) is
// malformed. Every token here is correctly signed by the configured key,
// so only the strictness rejects it; on the jwx-based parser most of them
// were accepted.
func TestVerifyStrictJWS(t *testing.T) {
	ed := jwttest.NewEd25519(t)
	m, clock, logs := newTestManager(t, Options{CacheSize: -1})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, InlineJWKS: ed.JWKS()})
	now := clock.Now()
	exp := now.Add(time.Hour).Unix()
	hdr := fmt.Sprintf(`{"alg":"EdDSA","kid":%q}`, ed.Kid())
	body := func(extra string) string {
		return fmt.Sprintf(`{"sub":"alice","iss":%q,"exp":%d%s}`, testIssuer, exp, extra)
	}
	withHeader := func(extra string) string {
		return fmt.Sprintf(`{"alg":"EdDSA","kid":%q%s}`, ed.Kid(), extra)
	}
	// A token whose signature segment has '-' or '_' in it, so that its
	// standard-alphabet spelling differs.
	var urlSig string
	for i := 0; ; i++ {
		urlSig = signRaw(t, ed, hdr, body(fmt.Sprintf(`,"n":%d`, i)))
		sig := urlSig[strings.LastIndexByte(urlSig, '.')+1:]
		if strings.ContainsAny(sig, "-_") {
			break
		}
	}
	valid := signRaw(t, ed, hdr, body(""))
	dot := strings.LastIndexByte(valid, '.')
	input, sig := valid[:dot], valid[dot+1:]

	cases := map[string]struct {
		token string
		want  Reason
	}{
		"the reference token is accepted":          {valid, ""},
		"an empty crit array is malformed":         {signRaw(t, ed, withHeader(`,"crit":[]`), body("")), ReasonMalformed},
		"a crit that is not an array is malformed": {signRaw(t, ed, withHeader(`,"crit":"exp"`), body("")), ReasonMalformed},
		"a crit of non-strings is malformed":       {signRaw(t, ed, withHeader(`,"crit":[1]`), body("")), ReasonMalformed},
		"a signature in the standard alphabet is malformed": {
			strings.NewReplacer("-", "+", "_", "/").Replace(urlSig[:strings.LastIndexByte(urlSig, '.')+1]) + strings.NewReplacer("-", "+", "_", "/").Replace(urlSig[strings.LastIndexByte(urlSig, '.')+1:]), ReasonMalformed},
		"a padded signature is malformed":                 {valid + "==", ReasonMalformed},
		"a signature with a line break is malformed":      {input + "." + sig[:40] + "\n" + sig[40:], ReasonMalformed},
		"a signature with a space is malformed":           {input + "." + sig[:40] + " " + sig[40:], ReasonMalformed},
		"a non-canonical signature encoding is malformed": {input + "." + sig[:len(sig)-1] + nonCanonical(sig[len(sig)-1]), ReasonMalformed},
		"a header in the standard alphabet is malformed":  {strings.Replace(valid, ".", "=.", 1), ReasonMalformed},
		"a duplicate alg in the header is malformed":      {signRaw(t, ed, withHeader(`,"alg":"none"`), body("")), ReasonMalformed},
		"a duplicate kid in the header is malformed":      {signRaw(t, ed, withHeader(`,"kid":"other"`), body("")), ReasonMalformed},
		"an escaped duplicate in the header is malformed": {signRaw(t, ed, withHeader(`,"\u0061lg":"EdDSA"`), body("")), ReasonMalformed},
		"a duplicate sub in the claims is malformed":      {signRaw(t, ed, hdr, body(`,"sub":"admin"`)), ReasonMalformed},
		"an escaped duplicate in the claims is malformed": {signRaw(t, ed, hdr, body(`,"s\u0075b":"admin"`)), ReasonMalformed},
		"a duplicate inside a nested claim is malformed":  {signRaw(t, ed, hdr, body(`,"org":{"role":"user","role":"admin"}`)), ReasonMalformed},
		"a duplicate among many claims is malformed":      {signRaw(t, ed, hdr, body(`,"x":0`+manyMembers(40)+`,"c39":0`)), ReasonMalformed},
		"many distinct claims are accepted":               {signRaw(t, ed, hdr, body(`,"x":0`+manyMembers(40))), ""},
		"a header nested too deep is malformed":           {signRaw(t, ed, withHeader(`,"x":[[[[1]]]]`), body("")), ReasonMalformed},
		"an embedded jwk's depth is accepted":             {signRaw(t, ed, withHeader(`,"jwk":{"kty":"OKP","x5c":["a"]}`), body("")), ""},
		"a header with too many members is malformed":     {signRaw(t, ed, withHeader(manyMembers(15)), body("")), ReasonMalformed},
		"claims nested too deep are malformed":            {signRaw(t, ed, hdr, body(`,"x":`+strings.Repeat("[", 16)+strings.Repeat("]", 16))), ReasonMalformed},
		"claims nested 15 deep are accepted":              {signRaw(t, ed, hdr, body(`,"x":`+strings.Repeat("[", 15)+strings.Repeat("]", 15))), ""},
		"invalid UTF-8 in a claim is malformed":           {signRaw(t, ed, hdr, body(`,"name":"a`+"\xff"+`"`)), ReasonMalformed},
		"a control character in a claim is malformed":     {signRaw(t, ed, hdr, body(`,"name":"a`+"\x01"+`"`)), ReasonMalformed},
		"trailing data after the header is malformed":     {signRaw(t, ed, hdr+"{}", body("")), ReasonMalformed},
		"a header that is an array is malformed":          {signRaw(t, ed, `["EdDSA"]`, body("")), ReasonMalformed},
		"a non-string kid is malformed":                   {signRaw(t, ed, `{"alg":"EdDSA","kid":7}`, body("")), ReasonMalformed},
		"a 16 KiB deeply nested header is malformed":      {nestedHeaderToken(t, ed.Kid(), now), ReasonMalformed},
	}
	var tokens []string
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			tokens = append(tokens, c.token)
			_, err := v.Verify(context.Background(), c.token)
			if got := ReasonOf(err); got != c.want {
				t.Fatalf("reason %q (%v), want %q", got, err, c.want)
			}
		})
	}
	assertNoTokenLeak(t, tokens, logs.String())
}

// manyMembers returns n members ,"c0":0,"c1":0,...
func manyMembers(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `,"c%d":0`, i)
	}
	return b.String()
}

// nonCanonical returns another base64url character that decodes to the same
// final byte as c when c ends an 86-character (64-byte) segment: the low two
// bits are padding and must be zero.
func nonCanonical(c byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return string(alphabet[i|1])
}
