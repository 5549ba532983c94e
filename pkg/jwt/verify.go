package jwt

import (
	"context"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/token"
)

// MaxTokenSize is the largest token Verify looks at; longer ones are
// rejected with ReasonTooLarge before any parsing.
const MaxTokenSize = 16 << 10

// maxNumericDate caps exp/nbf/iat (year 9999) so conversions stay defined.
const maxNumericDate = 253402300799

// keySource supplies the keys of one Verifier.
type keySource interface {
	// keys returns the current key set; it may wait for a first load.
	keys(ctx context.Context) (*keySet, error)
	// refreshUnknown is called when a token names a kid the set lacks; it
	// may refresh (rate limited) and returns the set to use. err is set
	// when the latest attempt to get the keys failed: then an unknown kid
	// is an outage (the key may be in the set we could not fetch), not the
	// token's fault. set may be non-nil with an error.
	refreshUnknown(ctx context.Context) (set *keySet, err error)
}

// staticSource is an inline JWKS.
type staticSource struct{ set *keySet }

func (s staticSource) keys(context.Context) (*keySet, error)           { return s.set, nil }
func (s staticSource) refreshUnknown(context.Context) (*keySet, error) { return s.set, nil }

// Verifier verifies tokens for one compiled jwt block. It is immutable and
// safe for concurrent use; get one from Manager.Verifier.
type Verifier struct {
	m         *Manager
	vid       uint64 // verified-token cache namespace: equal configs share it
	issuer    string
	audiences []string
	skew      time.Duration
	allowed   map[string]bool    // canonical algorithm names
	schema    *token.ClaimSchema // the claims an Identity keeps
	src       keySource
}

// WaitKeys waits until the Verifier's key source has keys (for a remote
// JWKS: the first fetch attempt finished) and reports why it has none. The
// policy controller uses it to set a JWKSUnavailable condition.
func (v *Verifier) WaitKeys(ctx context.Context) error {
	_, err := v.src.keys(ctx)
	return err
}

// KeysChanged returns a channel closed the next time the Verifier's keys
// come, go or change, or nil when its key source does not say (a remote
// JWKS keeps its keys through outages; an inline JWKS never changes). An
// HS secret says: a deleted secret is revoked, and becomes available
// again when it is back (see SecretResolver). The policy set uses it to
// follow a secret's availability in a policy's status.
func (v *Verifier) KeysChanged() <-chan struct{} {
	if n, ok := v.src.(interface{ changed() <-chan struct{} }); ok {
		return n.changed()
	}
	return nil
}

// Verify checks raw (a compact JWS, without any "Bearer " prefix) and
// returns the verified identity. Every error is an *Error with a Reason;
// its message never contains the token or any part of it.
//
// Checks, cheapest first: size (16 KiB) and shape (exactly two dots); the
// verified-token cache; the structure of every segment (base64url
// alphabet; header and claims JSON within depth and member limits, without
// duplicate names — see parseCompact); the header (alg allowed and never
// "none", no crit, no b64); the one key the kid names for that algorithm
// (with at most one rate-limited refresh of a remote JWKS for an unknown
// kid; header keys jwk/jku/x5u/x5c are never used); the signature; then
// exp (required), nbf and iat with the clock skew, iss and aud.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Identity, error) {
	id, ferr := v.verify(ctx, raw)
	if ferr != nil {
		return nil, ferr
	}
	return id, nil
}

func (v *Verifier) verify(ctx context.Context, raw string) (*Identity, *Error) {
	switch {
	case raw == "":
		return nil, fail(ReasonMissing, "no token")
	case len(raw) > MaxTokenSize:
		return nil, fail(ReasonTooLarge, "token larger than 16 KiB")
	case strings.Count(raw, ".") != 2:
		return nil, fail(ReasonMalformed, "not a compact JWS")
	}
	now := v.m.now()
	var ck cacheKey
	if c := v.m.cache; c != nil {
		ck = c.key(v.vid, raw)
		if id, ok := c.get(ck, now.UnixNano()); ok {
			v.m.obs.CacheLookup(true)
			return id, nil
		}
		v.m.obs.CacheLookup(false)
	}

	t, ferr := parseCompact(raw)
	if ferr != nil {
		return nil, ferr
	}
	alg := token.CanonicalAlgorithm(t.alg)
	switch {
	case alg == "" || !v.allowed[alg]:
		return nil, fail(ReasonAlgNotAllowed, "algorithm not allowed")
	case t.crit:
		return nil, fail(ReasonUnsupportedCrit, "unsupported critical header")
	case t.b64:
		// RFC 7797 unencoded payloads are not JWTs.
		return nil, fail(ReasonUnsupportedCrit, "unsupported b64 header")
	}
	k, ferr := v.key(ctx, t.kid, t.hasKid, alg)
	if ferr != nil {
		return nil, ferr
	}
	if !verifySignature(k, alg, t.input, t.sig) {
		return nil, fail(ReasonBadSignature, "signature does not verify")
	}
	id, exp, ferr := v.checkClaims(t.claims, now)
	if ferr != nil {
		// The signature verified: the token is authentic, only not
		// acceptable, so its user may be named in the deny line.
		ferr.Subject = claimSubject(t.claims)
		return nil, ferr
	}
	if c := v.m.cache; c != nil && now.UnixNano() < exp {
		c.put(ck, cacheEntry{id: id, key: k, expires: exp}, now.UnixNano())
	}
	return id, nil
}

// key returns the one configured key the token may be checked against.
// Nothing the token carries (jwk, jku, x5u, x5c) is ever consulted.
func (v *Verifier) key(ctx context.Context, kid string, hasKid bool, alg string) (*key, *Error) {
	set, err := v.src.keys(ctx)
	if err != nil {
		return nil, failWrap(ReasonKeysUnavailable, "no verification keys", err)
	}
	k, res := set.pick(kid, hasKid, alg)
	if res == unknownKid {
		set, err = v.src.refreshUnknown(ctx)
		if set != nil {
			k, res = set.pick(kid, hasKid, alg)
		}
		if res == unknownKid && err != nil {
			return nil, failWrap(ReasonKeysUnavailable, "key set cannot be refreshed", err)
		}
	}
	switch res {
	case unknownKid:
		return nil, fail(ReasonUnknownKid, "unknown key id")
	case ambiguous:
		return nil, fail(ReasonUnknownKid, "no key id and several keys fit")
	case noFit:
		return nil, fail(ReasonAlgNotAllowed, "algorithm does not fit the key")
	}
	return k, nil
}

// checkClaims checks exp, nbf, iat, iss and aud among the payload's members
// and builds the Identity: sub, iss, exp and the claims v keeps. It returns
// the identity and the expiry in unix nanoseconds.
func (v *Verifier) checkClaims(claims []member, now time.Time) (*Identity, int64, *Error) {
	var exp, nbf, iat, iss, aud, sub []byte
	kept := make([][]byte, v.schema.Len())
	for _, c := range claims {
		switch string(c.name) {
		case "exp":
			exp = c.value
		case "nbf":
			nbf = c.value
		case "iat":
			iat = c.value
		case "iss":
			iss = c.value
		case "aud":
			aud = c.value
		case "sub":
			sub = c.value
		default:
			if i, ok := v.schema.Index(string(c.name)); ok {
				kept[i] = c.value
			}
		}
	}
	expT, ok, bad := numericDate(exp)
	if bad {
		return nil, 0, fail(ReasonMalformed, "exp is not a number")
	}
	if !ok {
		return nil, 0, fail(ReasonMissingExp, "exp claim missing")
	}
	if !now.Before(expT.Add(v.skew)) {
		return nil, 0, fail(ReasonExpired, "token expired")
	}
	for _, c := range [...]struct {
		name string
		raw  []byte
	}{{"nbf", nbf}, {"iat", iat}} {
		name := c.name
		t, ok, bad := numericDate(c.raw)
		if bad {
			return nil, 0, fail(ReasonMalformed, name+" is not a number")
		}
		if ok && now.Add(v.skew).Before(t) {
			return nil, 0, fail(ReasonNotYetValid, "token not valid yet ("+name+")")
		}
	}
	if s, _ := token.JSONString(iss); s != v.issuer {
		return nil, 0, fail(ReasonBadIssuer, "issuer does not match")
	}
	auds, ok := audience(aud)
	if !ok {
		return nil, 0, fail(ReasonMalformed, "aud is neither a string nor an array of strings")
	}
	if len(v.audiences) > 0 && !containsAny(auds, v.audiences) {
		return nil, 0, fail(ReasonBadAudience, "audience does not match")
	}
	subject, isStr := token.JSONString(sub)
	if sub != nil && !isStr {
		return nil, 0, fail(ReasonMalformed, "sub is not a string")
	}
	return token.NewIdentity(subject, v.issuer, expT, v.schema, kept), expT.UnixNano(), nil
}

// numericDate converts a raw JSON NumericDate. ok is false when it is
// absent or null; bad is true when it is present but not a finite number.
func numericDate(raw []byte) (t time.Time, ok, bad bool) {
	if raw == nil || string(raw) == "null" {
		return time.Time{}, false, false
	}
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return time.Time{}, false, true
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, false, true
	}
	f = min(max(f, 0), maxNumericDate)
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64((f-sec)*1e9)), true, false
}

// audience returns a raw "aud" as a slice; ok is false for shapes other
// than absent, null, a string and an array of strings.
func audience(raw []byte) ([]string, bool) {
	switch {
	case raw == nil || string(raw) == "null":
		return nil, true
	case raw[0] == '"':
		s, _ := token.JSONString(raw)
		return []string{s}, true
	case raw[0] == '[':
		var elems []any
		if json.Unmarshal(raw, &elems) != nil {
			return nil, false
		}
		out := make([]string, 0, len(elems))
		for _, e := range elems {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

func containsAny(have, want []string) bool {
	for _, h := range have {
		for _, w := range want {
			if h == w {
				return true
			}
		}
	}
	return false
}

// claimSubject returns the "sub" among claims when it is a string.
func claimSubject(claims []member) string {
	for _, c := range claims {
		if string(c.name) == "sub" {
			s, _ := token.JSONString(c.value)
			return s
		}
	}
	return ""
}
