package policy

import (
	"fmt"
	"strings"

	"github.com/tollgate-dev/tollgate/pkg/pathnorm"
)

// A Template is a compiled rule path: literal segments, {name} (one
// segment, captured), * (one segment) and a trailing ** (zero or more
// segments). Matching is case-sensitive and allocation-free.
type Template struct {
	raw  string
	segs []segment
	tail bool
	vars []string
}

type segmentKind uint8

const (
	literalSegment segmentKind = iota
	variableSegment
	wildcardSegment
)

type segment struct {
	kind  segmentKind
	value string // literal text, or variable name
}

// String returns the template as written.
func (t *Template) String() string { return t.raw }

// Vars returns the names of the template's variables in order.
func (t *Template) Vars() []string { return t.vars }

// ParseTemplate compiles a rule path template.
func ParseTemplate(raw string) (*Template, error) {
	if !strings.HasPrefix(raw, "/") {
		return nil, fmt.Errorf("must start with %q", "/")
	}
	t := &Template{raw: raw}
	parts := strings.Split(raw[1:], "/")
	seen := make(map[string]bool)
	for i, p := range parts {
		last := i == len(parts)-1
		switch {
		case p == "**":
			if !last {
				return nil, fmt.Errorf("%q is only allowed as the last segment", "**")
			}
			t.tail = true
		case p == "*":
			t.segs = append(t.segs, segment{kind: wildcardSegment})
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}"):
			name := p[1 : len(p)-1]
			if !isIdentifier(name) {
				return nil, fmt.Errorf("variable %q must be an identifier ([A-Za-z_][A-Za-z0-9_]*)", name)
			}
			if seen[name] {
				return nil, fmt.Errorf("variable %q is declared twice", name)
			}
			seen[name] = true
			t.segs = append(t.segs, segment{kind: variableSegment, value: name})
			t.vars = append(t.vars, name)
		case strings.ContainsAny(p, "{}*"):
			return nil, fmt.Errorf("segment %q mixes literal text with {, } or *; a variable or wildcard must be a whole segment", p)
		case p == "" && !last:
			return nil, fmt.Errorf("empty segment (%q) never matches a normalized path", "//")
		case p == "." || p == "..":
			return nil, fmt.Errorf("dot segment %q never matches a normalized path", p)
		case strings.ContainsAny(p, "?#\\"):
			return nil, fmt.Errorf("segment %q contains a character (?, # or \\) that never appears in a normalized path", p)
		default:
			// Requests are matched after normalization, so a literal must
			// be in normal form to ever match (é is %C3%A9, %3a is %3A).
			if norm, err := pathnorm.Normalize("/" + p); err != nil || norm != "/"+p {
				if err != nil {
					return nil, fmt.Errorf("segment %q can never match: %w", p, err)
				}
				return nil, fmt.Errorf("segment %q can never match a normalized path; write it as %q", p, norm[1:])
			}
			t.segs = append(t.segs, segment{kind: literalSegment, value: p})
		}
	}
	return t, nil
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// Match reports whether the normalized path matches the template. The
// values of the template's variables are appended to captures, in the
// order of Vars, and the extended slice is returned.
func (t *Template) Match(path string, captures []string) ([]string, bool) {
	if len(path) == 0 || path[0] != '/' {
		return captures, false
	}
	start := len(captures)
	rest := path[1:]
	done := false // no path segments left
	for _, s := range t.segs {
		if done {
			return captures[:start], false
		}
		var seg string
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		} else {
			seg, rest, done = rest, "", true
		}
		switch s.kind {
		case literalSegment:
			if seg != s.value {
				return captures[:start], false
			}
		case variableSegment:
			if seg == "" {
				return captures[:start], false
			}
			captures = append(captures, seg)
		case wildcardSegment:
			if seg == "" {
				return captures[:start], false
			}
		}
	}
	if t.tail || done {
		return captures, true
	}
	return captures[:start], false
}

// MayBeUnder reports whether some path matching t can be under
// prefix, by comparing the template's leading literal segments.
func (t *Template) MayBeUnder(prefix string) bool {
	want := strings.Split(strings.Trim(prefix, "/"), "/")
	if prefix == "/" {
		return true
	}
	for i, w := range want {
		if i >= len(t.segs) {
			return t.tail
		}
		s := t.segs[i]
		if s.kind != literalSegment {
			continue
		}
		if s.value != w {
			return false
		}
	}
	return true
}
