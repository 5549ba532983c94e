package jwt

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// jsonLimits bounds what scanObject accepts.
type jsonLimits struct {
	depth   int // deepest nesting of objects and arrays; the top object is 1
	members int // most members of the top object; 0 means no limit
}

// Structural limits of the protected header and the payload. A header
// holds a handful of flat members (an embedded jwk, never used, nests
// three deep); claims nest a few levels (realm_access.roles, Hasura's
// namespaced claims). Tokens beyond them are malformed, whatever their
// signature: rejecting them costs a scan of the first bytes past the limit.
var (
	headerLimits  = jsonLimits{depth: 4, members: 16}
	payloadLimits = jsonLimits{depth: 16}
)

// Scan errors. They describe the document's shape only, never its content.
var (
	errJSONSyntax    = errors.New("invalid JSON")
	errJSONNotObject = errors.New("not a JSON object")
	errJSONDepth     = errors.New("JSON nested too deep")
	errJSONMembers   = errors.New("too many members")
	errJSONDuplicate = errors.New("duplicate member name")
	errJSONUTF8      = errors.New("invalid UTF-8 in a JSON string")
)

// scanObject checks that data is exactly one JSON object (RFC 8259, UTF-8,
// surrounding whitespace allowed) within lim, in which no object at any
// depth repeats a member name — parsers disagree on which of two equal
// names wins, so a token carrying one is ambiguous. Names are compared as
// encoding/json decodes them, escapes resolved. For each member of the top
// object it calls member with the member's name (escapes resolved) and raw
// value. It runs in time linear in len(data) and stops at
// the first violation.
func scanObject(data []byte, lim jsonLimits, member func(name, value []byte) error) error {
	s := scanner{data: data, lim: lim, member: member}
	s.space()
	if s.i >= len(s.data) || s.data[s.i] != '{' {
		return errJSONNotObject
	}
	if err := s.value(0); err != nil {
		return err
	}
	s.space()
	if s.i != len(s.data) {
		return errJSONSyntax
	}
	return nil
}

type scanner struct {
	data   []byte
	i      int
	lim    jsonLimits
	member func(name, value []byte) error
}

func (s *scanner) space() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value scans one value; depth is the number of enclosing containers.
func (s *scanner) value(depth int) error {
	if s.i >= len(s.data) {
		return errJSONSyntax
	}
	switch c := s.data[s.i]; {
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return errJSONSyntax
}

func (s *scanner) literal(lit string) error {
	if !bytes.HasPrefix(s.data[s.i:], []byte(lit)) {
		return errJSONSyntax
	}
	s.i += len(lit)
	return nil
}

// smallObject is how many names an object may hold before duplicates are
// found with a map instead of by comparing with each earlier name.
const smallObject = 8

func (s *scanner) object(depth int) error {
	if depth > s.lim.depth {
		return errJSONDepth
	}
	s.i++ // '{'
	s.space()
	if s.i < len(s.data) && s.data[s.i] == '}' {
		s.i++
		return nil
	}
	var small [smallObject][]byte
	var seen map[string]struct{}
	n := 0
	for {
		s.space()
		if s.i >= len(s.data) || s.data[s.i] != '"' {
			return errJSONSyntax
		}
		start := s.i
		escaped, err := s.str()
		if err != nil {
			return err
		}
		rawName := s.data[start:s.i]
		name := rawName[1 : len(rawName)-1]
		if escaped {
			var decoded string
			if err := json.Unmarshal(rawName, &decoded); err != nil {
				return errJSONSyntax
			}
			name = []byte(decoded)
		}
		if depth == 1 && s.lim.members > 0 && n >= s.lim.members {
			return errJSONMembers
		}
		switch {
		case n < smallObject:
			for _, prev := range small[:n] {
				if bytes.Equal(prev, name) {
					return errJSONDuplicate
				}
			}
			small[n] = name
		default:
			if seen == nil {
				seen = make(map[string]struct{}, 2*smallObject)
				for _, prev := range small {
					seen[string(prev)] = struct{}{}
				}
			}
			if _, dup := seen[string(name)]; dup {
				return errJSONDuplicate
			}
			seen[string(name)] = struct{}{}
		}
		n++
		s.space()
		if s.i >= len(s.data) || s.data[s.i] != ':' {
			return errJSONSyntax
		}
		s.i++
		s.space()
		vstart := s.i
		if err := s.value(depth); err != nil {
			return err
		}
		if depth == 1 && s.member != nil {
			if err := s.member(name, s.data[vstart:s.i]); err != nil {
				return err
			}
		}
		if end, err := s.separator('}'); end || err != nil {
			return err
		}
	}
}

func (s *scanner) array(depth int) error {
	if depth > s.lim.depth {
		return errJSONDepth
	}
	s.i++ // '['
	s.space()
	if s.i < len(s.data) && s.data[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		s.space()
		if err := s.value(depth); err != nil {
			return err
		}
		if end, err := s.separator(']'); end || err != nil {
			return err
		}
	}
}

// separator reads what follows a member or an element: ',' when more
// follow, or closing, the end of the object or array (end is true).
func (s *scanner) separator(closing byte) (end bool, err error) {
	s.space()
	if s.i >= len(s.data) {
		return false, errJSONSyntax
	}
	switch s.data[s.i] {
	case ',':
		s.i++
		return false, nil
	case closing:
		s.i++
		return true, nil
	}
	return false, errJSONSyntax
}

// str scans a string starting at its opening quote and reports whether it
// holds escapes. Control characters and invalid UTF-8 are rejected.
func (s *scanner) str() (escaped bool, err error) {
	s.i++ // '"'
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			s.i++
			return escaped, nil
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.data) {
				return false, errJSONSyntax
			}
			switch s.data[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.data) || !isHex4(s.data[s.i+2:s.i+6]) {
					return false, errJSONSyntax
				}
				s.i += 6
			default:
				return false, errJSONSyntax
			}
		case c < 0x20:
			return false, errJSONSyntax
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, size := utf8.DecodeRune(s.data[s.i:])
			if r == utf8.RuneError && size <= 1 {
				return false, errJSONUTF8
			}
			s.i += size
		}
	}
	return false, errJSONSyntax
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	d := s.data
	i := s.i
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		return errJSONSyntax
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return errJSONSyntax
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return errJSONSyntax
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	s.i = i
	return nil
}
