package decision

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/pkg/policy"
)

// fakeClaims is a token's string claims.
type fakeClaims map[string]string

func (c fakeClaims) ClaimString(name string) (string, bool) {
	v, ok := c[name]
	return v, ok
}

// keyTuple is everything a counter key must tell apart: the limit's place
// (policy, rule, limit), what it counts by, and the values of the request
// that it counts.
type keyTuple struct {
	policy, rule, limit string
	by                  policy.KeyKind
	byName              string
	values              string // %q of the values the kind reads
}

// randomString draws from an alphabet of separators, digits and the
// characters of the old key format, so that near-collisions are frequent.
func randomString(r *rand.Rand, minLen int) string {
	const alphabet = ":|/-0129a\x00"
	n := minLen + r.IntN(5)
	var b strings.Builder
	for range n {
		b.WriteByte(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

func maybe(r *rand.Rand) (string, bool) {
	if r.IntN(4) == 0 {
		return "", false
	}
	return randomString(r, 0), true
}

// keyBuilder builds the counter key of a tuple's limit for a request.
type keyBuilder func(tup *keyTuple, l *policy.Limit, in *keyInputs) ([]byte, bool)

// findCollision builds the keys of n random tuples and returns two distinct
// tuples that share a key, if it finds any.
func findCollision(t *testing.T, n int, build keyBuilder) (key string, a, b keyTuple, found bool) {
	t.Helper()
	r := rand.New(rand.NewPCG(9, 5))
	kinds := []policy.KeyKind{policy.ByUser, policy.ByIP, policy.ByUserIP, policy.ByClaim, policy.ByHeader}
	seen := map[string]keyTuple{}
	for range n {
		tup := keyTuple{policy: randomString(r, 1), limit: randomString(r, 1), by: kinds[r.IntN(len(kinds))]}
		if r.IntN(2) == 0 {
			tup.rule = randomString(r, 1) // rule names are never empty
		}
		in := keyInputs{ip: randomString(r, 0), headers: map[string]string{}}
		claims := fakeClaims{}
		if r.IntN(8) != 0 {
			in.claims, in.issuer, in.subject = claims, randomString(r, 0), randomString(r, 0)
		}
		var value string
		var present bool
		switch tup.by {
		case policy.ByClaim, policy.ByHeader:
			tup.byName = randomString(r, 1)
			if value, present = maybe(r); present {
				claims[tup.byName], in.headers[tup.byName] = value, value
			}
		}
		switch tup.by {
		case policy.ByUser:
			tup.values = fmt.Sprintf("%q %q", in.issuer, in.subject)
		case policy.ByIP:
			tup.values = fmt.Sprintf("%q", in.ip)
		case policy.ByUserIP:
			tup.values = fmt.Sprintf("%q %q %q", in.issuer, in.subject, in.ip)
		default:
			tup.values = fmt.Sprintf("%q %v", value, present)
		}
		l := policy.Limit{By: tup.by, ByName: tup.byName,
			CounterPrefix: policy.CounterPrefix(tup.policy, tup.rule, tup.limit, tup.by, tup.byName)}
		b, ok := build(&tup, &l, &in)
		if !ok {
			if !tup.by.NeedsIdentity() || in.claims != nil {
				t.Fatalf("%+v: no key", tup)
			}
			continue
		}
		if other, dup := seen[string(b)]; dup && other != tup {
			return string(b), other, tup, true
		}
		seen[string(b)] = tup
	}
	if len(seen) < n/2 {
		t.Fatalf("only %d distinct tuples of %d: the generator repeats itself", len(seen), n)
	}
	return "", keyTuple{}, keyTuple{}, false
}

func TestCounterKeysOfDistinctTuplesNeverMeet(t *testing.T) {
	build := func(_ *keyTuple, l *policy.Limit, in *keyInputs) ([]byte, bool) { return appendCounterKey(nil, l, in) }
	if key, a, b, found := findCollision(t, 200_000, build); found {
		t.Fatalf("two tuples share the counter key %q:\n%+v\n%+v", key, a, b)
	}
}

// TestCounterKeyGeneratorFindsOldCollisions shows that the generator finds
// the collisions of the keys joined with ':' that tollgate used before.
func TestCounterKeyGeneratorFindsOldCollisions(t *testing.T) {
	joined := func(tup *keyTuple, l *policy.Limit, in *keyInputs) ([]byte, bool) {
		key := tup.policy + ":" + tup.limit + ":"
		if tup.rule != "" {
			key = tup.policy + ":" + tup.rule + ":" + tup.limit + ":"
		}
		if l.By.NeedsIdentity() && in.claims == nil {
			return nil, false
		}
		orMissing := func(v string, ok bool) string {
			if !ok {
				return "\x00"
			}
			return v
		}
		switch l.By {
		case policy.ByUser:
			key += in.issuer + "|" + in.subject
		case policy.ByIP:
			key += in.ip
		case policy.ByUserIP:
			key += in.issuer + "|" + in.subject + "|" + in.ip
		case policy.ByClaim:
			key += orMissing(in.claims.ClaimString(l.ByName))
		case policy.ByHeader:
			v, ok := in.headers[l.ByName]
			key += orMissing(v, ok)
		}
		return []byte(key), true
	}
	if _, _, _, found := findCollision(t, 200_000, joined); !found {
		t.Fatal("no collision found among ':'-joined keys: the generator is too weak to test anything")
	}
}

func TestCounterKeyFormat(t *testing.T) {
	tests := map[string]struct {
		limit policy.Limit
		in    keyInputs
		want  string
	}{
		"a policy limit by user": {
			policy.Limit{By: policy.ByUser, CounterPrefix: policy.CounterPrefix("shop/tasks-api", "", "own", policy.ByUser, "")},
			keyInputs{claims: fakeClaims{}, issuer: "https://auth.example.com", subject: "alice"},
			"14:shop/tasks-api0:3:own4:user24:https://auth.example.com5:alice",
		},
		"a rule limit by header, the header missing": {
			policy.Limit{By: policy.ByHeader, ByName: "x-key", CounterPrefix: policy.CounterPrefix("shop/tasks-api", "own", "https", policy.ByHeader, "x-key")},
			keyInputs{headers: map[string]string{}},
			"14:shop/tasks-api3:own5:https12:header:x-key-",
		},
		"a rule limit by claim, the claim empty": {
			policy.Limit{By: policy.ByClaim, ByName: "org", CounterPrefix: policy.CounterPrefix("a/b", "r", "l", policy.ByClaim, "org")},
			keyInputs{claims: fakeClaims{"org": ""}},
			"3:a/b1:r1:l9:claim:org0:",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := appendCounterKey(nil, &tt.limit, &tt.in)
			if !ok || string(got) != tt.want {
				t.Fatalf("key %q %v, want %q", got, ok, tt.want)
			}
		})
	}
}
