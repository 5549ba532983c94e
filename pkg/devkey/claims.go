package devkey

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ParseClaims turns "name=value" arguments into token claims; see
// ParseClaimValue for values. A later argument for the same name wins.
func ParseClaims(args []string) (map[string]any, error) {
	claims := make(map[string]any, len(args))
	for _, a := range args {
		name, value, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("devkey: claim %q: want name=value", a)
		}
		claims[name] = ParseClaimValue(value)
	}
	return claims, nil
}

// ParseClaimValue returns s decoded as JSON when it is one valid JSON value
// (42, true, ["a","b"], {"k":1}, "quoted"), else s itself as a string, so
// that role=admin needs no quotes. Numbers keep their exact digits.
func ParseClaimValue(s string) any {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return s
	}
	// Trailing content ("1 2", "true x") makes the whole a string.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return s
	}
	return v
}
