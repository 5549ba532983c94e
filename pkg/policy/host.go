package policy

import (
	"net/netip"
	"strings"
)

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

// Match reports whether the canonical host (see ParseAuthority) matches.
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

// MaxAuthority is the longest :authority ParseAuthority accepts: a
// 253-byte name, a trailing dot, ":" and a 5-digit port.
const MaxAuthority = 253 + 1 + 6

// ParseAuthority returns the canonical host of a request's :authority (or
// Host header): without port or trailing dot, in lower case, the form
// Host.Match expects. It reports false for an authority that is not a
// well-formed host, with an optional port, because proxies and backends
// disagree on what such a host names and tollgate must not guess: an
// empty host, an empty label (repeated or leading dots, more than one
// trailing dot), more than one port, an empty or non-numeric port, a name
// in brackets, percent-escapes, whitespace or any other byte outside
// letters, digits, "-" and "_", and a numeric last label that is not a
// dotted-quad IPv4 address (WHATWG parsers read "0x7f.1" as 127.0.0.1).
// An IPv6 literal in brackets is accepted.
//
// ParseAuthority allocates only when the host has upper-case letters.
func ParseAuthority(authority string) (string, bool) {
	if authority == "" || len(authority) > MaxAuthority {
		return "", false
	}
	host, port := authority, ""
	if authority[0] == '[' {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return "", false
		}
		host, port = authority[:end+1], authority[end+1:]
		if a, err := netip.ParseAddr(host[1:end]); err != nil || !a.Is6() || a.Zone() != "" {
			return "", false
		}
	} else if i := strings.IndexByte(authority, ':'); i >= 0 {
		host, port = authority[:i], authority[i:]
		if !validName(host) {
			return "", false
		}
	} else if !validName(host) {
		return "", false
	}
	if port != "" && !validPort(port) {
		return "", false
	}
	if host[0] != '[' {
		host = strings.TrimSuffix(host, ".")
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(host), true
		}
	}
	return host, true
}

// validName reports whether name, with an optional trailing dot, is made
// of non-empty labels of at most 63 letters, digits, "-" and "_", and is
// not a number other than a dotted-quad IPv4 address.
func validName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	labels, start := 0, 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			c := name[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
			continue
		}
		if n := i - start; n == 0 || n > 63 {
			return false
		}
		labels++
		start = i + 1
	}
	last := name[strings.LastIndexByte(name, '.')+1:]
	if numeric(last) {
		a, err := netip.ParseAddr(name)
		return err == nil && a.Is4()
	}
	return true
}

// numeric reports whether a label is a number to a WHATWG host parser:
// decimal digits, or "0x" followed by hex digits.
func numeric(label string) bool {
	digits := label
	if len(label) >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X') {
		digits = label[2:]
		for i := 0; i < len(digits); i++ {
			if c := digits[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(digits); i++ {
		if c := digits[i]; c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// validPort reports whether p is ":" and a port number.
func validPort(p string) bool {
	if len(p) < 2 || len(p) > 6 || p[0] != ':' {
		return false
	}
	n := 0
	for i := 1; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

// MatchPrefix reports whether path is under prefix, segment-wise.
func MatchPrefix(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}
