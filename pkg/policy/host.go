package policy

import "strings"

// A Host matches the request's :authority: an exact name, or a "*."
// wildcard that matches any name ending in the rest (at least one label).
type Host struct {
	// Name is the exact name, or the suffix with its leading dot
	// (".example.com") for a wildcard.
	Name     string
	Wildcard bool
}

// Host specificities, most specific first: exact > wildcard > any.
const (
	SpecificityAny = iota
	SpecificityWildcard
	SpecificityExact
)

// Match reports whether the canonical host (see CanonicalHost) matches.
func (h Host) Match(host string) bool {
	if h.Wildcard {
		return len(host) > len(h.Name) && strings.HasSuffix(host, h.Name)
	}
	return host == h.Name
}

// Specificity ranks the matcher for policy selection.
func (h Host) Specificity() int {
	if h.Wildcard {
		return SpecificityWildcard
	}
	return SpecificityExact
}

// String returns the host as written in a policy.
func (h Host) String() string {
	if h.Wildcard {
		return "*" + h.Name
	}
	return h.Name
}

// CanonicalHost returns the authority without port or trailing dot, in lower
// case, the form Host.Match expects.
func CanonicalHost(authority string) string {
	h := authority
	if strings.HasPrefix(h, "[") { // IPv6 literal
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[:i+1]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// MatchPrefix reports whether path is under prefix, segment-wise.
func MatchPrefix(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}
