package policy

import "strconv"

// Counter keys. A counter key is a sequence of parts, each written as its
// length in decimal, a colon and its bytes ("5:alice"), or as "-" for a
// value the request lacks (a missing claim or header). Such a sequence
// reads back in exactly one way, so two keys are equal only when they list
// the same parts: whatever bytes a token or a client puts into a value, it
// cannot make two different (policy, rule, limit, subject) tuples share a
// counter. The parts are, in order:
//
//	policy key ("<namespace>/<name>"), rule name ("" for a policy-level
//	limit), limit name, what the limit counts by ("user", "ip", "user+ip",
//	"claim:<name>", "header:<lower-case name>"), then the values: issuer
//	and subject (user), client IP (ip), issuer, subject and client IP
//	(user+ip), the claim's or the header's value (claim, header).
//
// Rule names are never empty, so "" marks a policy-level limit. Changing
// what a limit counts by starts new counters rather than reusing old ones.

// CounterPrefix returns the fixed parts of the counter keys of one limit.
func CounterPrefix(policyKey, rule, limit string, by KeyKind, byName string) string {
	b := AppendCounterPart(nil, policyKey)
	b = AppendCounterPart(b, rule)
	b = AppendCounterPart(b, limit)
	return string(AppendCounterPart(b, by.spec(byName)))
}

// AppendCounterPart appends one part of a counter key to dst.
func AppendCounterPart(dst []byte, part string) []byte {
	dst = strconv.AppendInt(dst, int64(len(part)), 10)
	dst = append(dst, ':')
	return append(dst, part...)
}

// AppendMissingCounterPart appends the part that stands for a missing
// claim or header: every request without it shares one counter rather
// than escaping the limit.
func AppendMissingCounterPart(dst []byte) []byte { return append(dst, '-') }

// spec returns the "by" field that compiles to k and name.
func (k KeyKind) spec(name string) string {
	switch k {
	case ByUser, ByIP, ByUserIP:
		return k.String()
	case ByClaim, ByHeader:
		return k.String() + ":" + name
	}
	return "kind" + strconv.Itoa(int(k)) + ":" + name
}
