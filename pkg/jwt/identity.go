package jwt

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
)

// Identity is a verified token. It is read-only after Verify returns it and
// safe to share between goroutines: the same *Identity is cached and handed
// to every caller presenting the same token, so callers must not modify its
// fields. Claim returns copies of composite values for the same reason.
type Identity struct {
	Subject   string    // "sub", "" when absent
	Issuer    string    // "iss"
	Expiry    time.Time // "exp"
	KeyID     string    // "kid" of the header, "" when absent
	Algorithm string    // canonical algorithm that verified the token

	audience []string
	claims   map[string]any // decoded with json.Number for numbers
}

// Audience returns a copy of the token's audiences ("aud" as an array).
func (id *Identity) Audience() []string { return append([]string(nil), id.audience...) }

// Claim returns the named claim as decoded from JSON (numbers as
// json.Number, objects as map[string]any, arrays as []any). Objects and
// arrays are deep copies.
func (id *Identity) Claim(name string) (any, bool) {
	v, ok := id.claims[name]
	if !ok {
		return nil, false
	}
	return deepCopy(v), true
}

// ClaimString returns a scalar claim as a string: strings as they are,
// numbers in canonical decimal form (integers without exponent or fraction,
// e.g. 1e3 → "1000"), booleans as "true"/"false". It reports false for
// absent, null, object and array claims.
func (id *Identity) ClaimString(name string) (string, bool) {
	return scalarString(id.claims[name])
}

// ClaimStrings returns a string claim as a one-element slice, or the string
// elements of an array claim (other elements are skipped). It returns nil
// when the claim is absent or of another type. Used for bypass checks such
// as "role: admin" against a roles array.
func (id *Identity) ClaimStrings(name string) []string {
	switch v := id.claims[name].(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func scalarString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case json.Number:
		return canonicalNumber(string(v)), true
	}
	return "", false
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

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = deepCopy(e)
		}
		return s
	}
	return v
}
