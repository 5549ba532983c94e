// Package token holds what the decision core and the token adapter
// (pkg/jwt) share, with the standard library only: a verified token's
// Identity, the Reason a token is refused, and the Config of a policy's jwt
// block with the one validator of its settings (algorithms, clock skew,
// key source).
package token

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Identity is a verified token: what decisions read of it and nothing more,
// so that the verified-token cache stays small (BenchmarkTokenCacheBytes).
// It keeps sub, iss, exp and the claims the Verifier's Config.Claims names;
// every other claim reads as absent. It is read-only after Verify returns
// it and safe to share between goroutines: the same *Identity is cached and
// handed to every caller presenting the same token.
type Identity struct {
	Subject string // "sub", "" when absent
	Issuer  string // "iss" (the Verifier's issuer, which it equals)

	exp    int64        // "exp", unix nanoseconds
	schema *ClaimSchema // names of the kept claims, shared by the Verifier
	// kept encodes the kept claims in schema order: per claim a tag byte
	// (tagAbsent, tagString, tagScalar, tagList), then for tagString and
	// tagScalar a uvarint length and the value, for tagList a uvarint count
	// and each string element as length and bytes. It shares one
	// allocation with Subject.
	kept string
}

// A ClaimSchema is the sorted list of claims a Verifier keeps.
type ClaimSchema struct{ names []string }

const (
	tagAbsent byte = iota // absent, null, or an object
	tagString             // a string
	tagScalar             // a number (canonical form) or a boolean
	tagList               // an array; only its string elements are kept
)

// NewClaimSchema returns the schema for names: sorted, without duplicates,
// and without sub and iss, which an Identity always has.
func NewClaimSchema(names []string) *ClaimSchema {
	var out []string
	for _, n := range names {
		if n != "sub" && n != "iss" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return &ClaimSchema{names: slices.Compact(out)}
}

// Len returns the number of claims kept.
func (s *ClaimSchema) Len() int { return len(s.names) }

// Index returns the position of a kept claim.
func (s *ClaimSchema) Index(name string) (int, bool) { return slices.BinarySearch(s.names, name) }

// Names returns the claims kept, sorted.
func (s *ClaimSchema) Names() []string { return slices.Clone(s.names) }

// NewIdentity returns the identity of a verified token: its subject and
// issuer, its expiry, and kept[i], the raw JSON value of the schema's i-th
// claim (nil when absent), for values that are valid JSON. Subject and the
// kept claims share one allocation.
func NewIdentity(subject, issuer string, exp time.Time, schema *ClaimSchema, kept [][]byte) *Identity {
	b := make([]byte, 0, len(subject)+16)
	b = append(b, subject...)
	for _, raw := range kept {
		b = appendClaim(b, raw)
	}
	all := string(b)
	return &Identity{Subject: all[:len(subject)], Issuer: issuer, exp: exp.UnixNano(), schema: schema, kept: all[len(subject):]}
}

// Expiry returns the token's "exp".
func (id *Identity) Expiry() time.Time { return time.Unix(0, id.exp) }

// lookup returns the tag and encoded value of a kept claim.
func (id *Identity) lookup(name string) (byte, string) {
	i, ok := slices.BinarySearch(id.schema.names, name)
	if !ok {
		return tagAbsent, ""
	}
	rest := id.kept
	for j := 0; ; j++ {
		tag := rest[0]
		n := encodedLen(rest)
		if j == i {
			return tag, rest[1:n]
		}
		rest = rest[n:]
	}
}

// ClaimString returns a scalar claim as a string: strings as they are,
// numbers in canonical decimal form (integers without exponent or fraction,
// e.g. 1e3 → "1000"), booleans as "true"/"false". It reports false for
// absent, null, object and array claims, and for claims the Verifier does
// not keep. "sub" and "iss" are always kept.
func (id *Identity) ClaimString(name string) (string, bool) {
	switch name {
	case "sub":
		return id.Subject, id.Subject != ""
	case "iss":
		return id.Issuer, id.Issuer != ""
	}
	tag, v := id.lookup(name)
	if tag != tagString && tag != tagScalar {
		return "", false
	}
	s, _ := nextString(v)
	return s, true
}

// ClaimStrings returns a string claim as a one-element slice, or the string
// elements of an array claim (other elements are skipped). It returns nil
// when the claim is absent, of another type, or not kept. Used for bypass
// checks such as "role: admin" against a roles array.
func (id *Identity) ClaimStrings(name string) []string {
	if name == "sub" || name == "iss" {
		if s, ok := id.ClaimString(name); ok {
			return []string{s}
		}
		return nil
	}
	tag, v := id.lookup(name)
	switch tag {
	case tagString:
		s, _ := nextString(v)
		return []string{s}
	case tagList:
		count, n := uvarint(v)
		v = v[n:]
		out := make([]string, 0, count)
		for range count {
			var s string
			s, v = nextString(v)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// nextString reads one length-prefixed string.
func nextString(v string) (s, rest string) {
	l, n := uvarint(v)
	return v[n : n+int(l)], v[n+int(l):]
}

// uvarint decodes a binary.AppendUvarint encoding at the start of s.
func uvarint(s string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			return x | uint64(c)<<shift, i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, 0
}

// encodedLen returns the length of the encoded claim at the start of v.
func encodedLen(v string) int {
	switch v[0] {
	case tagString, tagScalar:
		_, rest := nextString(v[1:])
		return len(v) - len(rest)
	case tagList:
		count, n := uvarint(v[1:])
		rest := v[1+n:]
		for range count {
			_, rest = nextString(rest)
		}
		return len(v) - len(rest)
	}
	return 1
}

// appendClaim encodes one kept claim from its raw JSON value (which
// scanObject accepted); raw is nil when the claim is absent.
func appendClaim(b []byte, raw []byte) []byte {
	if len(raw) == 0 {
		return append(b, tagAbsent)
	}
	switch c := raw[0]; {
	case c == '"':
		s, _ := JSONString(raw)
		return appendString(append(b, tagString), s)
	case c == 't' || c == 'f':
		return appendString(append(b, tagScalar), string(raw))
	case c == '-' || (c >= '0' && c <= '9'):
		return appendString(append(b, tagScalar), canonicalNumber(string(raw)))
	case c == '[':
		var elems []any
		if json.Unmarshal(raw, &elems) != nil {
			return append(b, tagAbsent)
		}
		var strs []string
		for _, e := range elems {
			if s, ok := e.(string); ok {
				strs = append(strs, s)
			}
		}
		b = binary.AppendUvarint(append(b, tagList), uint64(len(strs)))
		for _, s := range strs {
			b = appendString(b, s)
		}
		return b
	}
	return append(b, tagAbsent) // null, object
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// canonicalNumber formats a JSON number literal canonically: integer
// literals are kept (JSON forbids leading zeros), integral values without
// exponent ("1e3", "10.0" → "1000", "10"), other values in shortest form.
func canonicalNumber(lit string) string {
	if isIntLiteral(lit) {
		if lit == "-0" {
			return "0"
		}
		return lit
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return lit
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e21 {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func isIntLiteral(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
