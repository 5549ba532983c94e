// Package pathnorm turns the request-target of a request into the path
// that policies are matched against, and rejects the targets that backends
// would not all route the same way.
//
// The normal form of a path is:
//
//   - absolute (starts with "/"), without query or fragment;
//   - free of "." and ".." segments and of empty segments, except that the
//     path may end with "/";
//   - made only of RFC 3986 pchar bytes and "/": unreserved characters
//     (ALPHA / DIGIT / "-" / "." / "_" / "~") appear decoded, every other
//     byte that is not a sub-delim, ":" or "@" appears percent-encoded with
//     uppercase hex digits.
//
// Strict, the default of the decision engine, accepts only a path that is
// already in normal form up to its spelling: it rejects any "." or ".."
// segment (raw or percent-encoded, any case), any empty segment ("//") and
// any percent-encoded unreserved character, because routers disagree on
// how to resolve them (RFC 3986 and WHATWG routers pop an empty segment
// for a "..", nginx and path.Clean merge slashes first, Express-style
// routers do not resolve dots at all). A normalizing proxy (Envoy with
// normalize_path and merge_slashes) sends normal paths and is unaffected.
//
// Normalize, the explicit opt-in, resolves such paths as RFC 3986
// §5.2.4 remove_dot_segments does, with empty segments taking part as
// segments, and then merges repeated slashes (Envoy's normalize_path
// followed by merge_slashes). A ".." that would remove an empty segment is
// rejected: there merging first (nginx, path.Clean) and resolving first
// (RFC 3986, WHATWG) give different paths.
//
// Both accept the same spellings of a segment: lowercase hex digits in
// escapes are uppercased, and raw bytes that RFC 3986 does not allow in a
// path (space, `"`, "<", ">", "[", "]", "^", "`", "{", "|", "}" and every
// byte >= 0x80) are percent-encoded, so that "/café" and "/caf%C3%A9" have
// one normal form. These never change which segments a path has. Encoded
// bytes are opaque: they are never decoded, and need not be valid UTF-8
// ("%E9" is kept), except for the overlong forms below.
//
// Both reject what upstreams resolve in different ways: encoded "/" and
// "\", raw "\", NUL, control characters, invalid escapes and dot segments
// with a ";" parameter. Both also reject the encodings that exist to
// smuggle a dot or a separator past a check, which a lenient backend
// reads as ASCII: overlong UTF-8, raw or encoded ("%C0%AE" is an overlong
// ".", "%C0%AF" an overlong "/"), and a double-encoded ".", "/" or "\"
// ("%252e", "%252F", "%255c"); resolving cannot tell which reading the
// backend takes. See the Err values.
//
// The path ends at the first "?" or "#": a "#" before any "?" starts the
// fragment, and a "?" after it is part of the fragment, not a query.
//
// Case is preserved: matching is case-sensitive.
package pathnorm

import "errors"

// MaxLength is the longest path, before and after normalization, that
// Strict and Normalize accept. The query and fragment do not count.
const MaxLength = 8 << 10

// Errors returned by Strict and Normalize. Each rejection returns exactly
// one of them, unwrapped; callers answer any of them with 400 Bad Request.
var (
	// ErrTooLong reports a path longer than MaxLength.
	ErrTooLong = errors.New("pathnorm: path too long")
	// ErrNotAbsolute reports a path that does not start with "/" (including
	// the empty path, "*" and absolute-form URIs).
	ErrNotAbsolute = errors.New("pathnorm: path not absolute")
	// ErrInvalidEscape reports a "%" not followed by two hex digits.
	ErrInvalidEscape = errors.New("pathnorm: invalid percent-encoding")
	// ErrEncodedSlash reports "%2F" or "%2f" in the path.
	ErrEncodedSlash = errors.New("pathnorm: encoded slash")
	// ErrEncodedBackslash reports "%5C" or "%5c" in the path.
	ErrEncodedBackslash = errors.New("pathnorm: encoded backslash")
	// ErrBackslash reports a raw "\" in the path.
	ErrBackslash = errors.New("pathnorm: backslash")
	// ErrNUL reports a NUL byte, raw anywhere in the request-target or
	// encoded ("%00") in the path.
	ErrNUL = errors.New("pathnorm: NUL byte")
	// ErrControlChar reports a raw control byte (0x01-0x1F, 0x7F) anywhere
	// in the request-target, query and fragment included.
	ErrControlChar = errors.New("pathnorm: control character")
	// ErrDotSegmentParam reports a "." or ".." segment followed by a ";"
	// parameter (raw or "%3B"), such as "..;x" or ".;": servers that strip
	// path parameters (Tomcat) resolve it as a dot segment.
	ErrDotSegmentParam = errors.New("pathnorm: dot segment with parameter")
	// ErrDotSegment reports a "." or ".." segment, raw or percent-encoded
	// in any case (Strict only).
	ErrDotSegment = errors.New("pathnorm: dot segment")
	// ErrEmptySegment reports an empty segment ("//") other than a
	// trailing slash (Strict only).
	ErrEmptySegment = errors.New("pathnorm: empty segment")
	// ErrEncodedUnreserved reports a percent-encoded unreserved character
	// such as "%61" or "%7E" (Strict only).
	ErrEncodedUnreserved = errors.New("pathnorm: percent-encoded unreserved character")
	// ErrAmbiguousDotSegment reports a ".." that would remove an empty
	// segment (Normalize only): "/a/b//.." is "/a/" when slashes are merged
	// first (nginx, path.Clean) and "/a/b/" when dot segments are resolved
	// first (RFC 3986, WHATWG).
	ErrAmbiguousDotSegment = errors.New("pathnorm: dot-dot segment after an empty segment")
	// ErrOverlongUTF8 reports an overlong UTF-8 sequence, raw or
	// percent-encoded in any case: a 0xC0 or 0xC1 byte ("%C0%AE" is an
	// overlong ".", "%C0%AF" an overlong "/"), 0xE0 followed by 0x80-0x9F,
	// or 0xF0 followed by 0x80-0x8F. Such sequences are never valid UTF-8
	// and exist to smuggle ASCII past a check: a lenient decoder in a
	// backend reads them as a dot or a separator.
	ErrOverlongUTF8 = errors.New("pathnorm: overlong UTF-8 encoding")
	// ErrDoubleEncoded reports "%25" followed by the escape of ".", "/" or
	// "\\" ("%252e", "%252F", "%255c", any case): a backend that decodes
	// twice reads a dot segment or a separator.
	ErrDoubleEncoded = errors.New("pathnorm: double-encoded dot, slash or backslash")
)

// Strict returns the path of raw, a request-target in origin form as Envoy
// puts it in ":path" (path, optional "?query", optional "#fragment"), when
// that path is in normal form up to the spelling of its bytes (see the
// package comment). The query and fragment are dropped; only their bytes
// are checked for NUL and control characters.
//
// On success the result is in normal form and Strict(result) returns
// result. On failure the result is "" and the error is one of the Err
// values of this package.
//
// Strict does not allocate when the path is already in normal form, with
// or without a query.
func Strict(raw string) (string, error) { return clean(raw, false) }

// Normalize returns the normal form of the path in raw, resolving dot
// segments as RFC 3986 §5.2.4 does and then merging repeated slashes. It
// is the explicit opt-in to Strict (see the package comment); a ".." that
// would remove an empty segment is rejected with ErrAmbiguousDotSegment.
//
// On success the result is in normal form and Normalize(result) returns
// result. On failure the result is "" and the error is one of the Err
// values of this package.
//
// Normalize does not allocate when the path is already in normal form, with
// or without a query.
func Normalize(raw string) (string, error) { return clean(raw, true) }

// SplitTarget splits a request-target into its path and its query: the
// path ends at the first "?" or "#", and the query is what follows a "?"
// that no "#" precedes, up to the next "#". A "?" inside the fragment
// does not start a query.
func SplitTarget(raw string) (path, query string) {
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '#':
			return raw[:i], ""
		case '?':
			query = raw[i+1:]
			for j := 0; j < len(query); j++ {
				if query[j] == '#' {
					query = query[:j]
					break
				}
			}
			return raw[:i], query
		}
	}
	return raw, ""
}

func clean(raw string, resolve bool) (string, error) {
	end := len(raw)
	for i := 0; i < len(raw); i++ {
		if raw[i] == '?' || raw[i] == '#' {
			end = i
			break
		}
	}
	path := raw[:end]
	if len(path) > MaxLength {
		return "", ErrTooLong
	}
	if path == "" || path[0] != '/' {
		return "", ErrNotAbsolute
	}
	for i := end; i < len(raw); i++ {
		if err := checkControl(raw[i]); err != nil {
			return "", err
		}
	}

	if isNormal(path) {
		return path, nil
	}

	out := lazybuf{s: path}
	merged := false   // whether the output holds empty segments to merge
	trailing := false // whether the last segment asks for a trailing slash
	for i := 0; i < len(path); {
		// path[i] == '/': a segment starts at i+1 and ends at the next '/'.
		j := i + 1
		for j < len(path) && path[j] != '/' {
			j++
		}
		last := j == len(path)
		start := out.w
		out.append('/')
		encodedUnreserved, err := out.appendSegment(path[i+1 : j])
		if err != nil {
			return "", err
		}
		// Dot segments are recognized after decoding, so "%2e%2E" is "..".
		dots, param := out.dotSegment(start + 1)
		empty := out.w == start+1
		switch {
		case param:
			return "", ErrDotSegmentParam
		case !resolve && dots > 0:
			return "", ErrDotSegment
		case !resolve && encodedUnreserved:
			return "", ErrEncodedUnreserved
		case !resolve && empty && !last:
			return "", ErrEmptySegment
		case empty:
			// An empty segment stays in the output until the end, so that
			// a later ".." can tell that it would remove it.
			merged = merged || !last
			trailing = false
		case dots == 1:
			out.w = start
			trailing = true
		case dots == 2:
			prev := out.lastSlash(start)
			if prev+1 == start && start > 0 {
				// The segment before the ".." is empty.
				return "", ErrAmbiguousDotSegment
			}
			out.w = prev
			trailing = true
		default:
			trailing = false
		}
		i = j
	}
	if trailing || out.w == 0 {
		out.append('/')
	}
	if merged {
		out.mergeSlashes()
	}
	if out.w > MaxLength {
		// Escaping raw bytes can grow the path; keep the result acceptable
		// to a second call.
		return "", ErrTooLong
	}
	return out.string(), nil
}

// appendSegment appends the normal form of seg, a path segment without
// "/", to b, and reports whether seg held a percent-encoded unreserved
// character.
func (b *lazybuf) appendSegment(seg string) (encodedUnreserved bool, err error) {
	var p2, p1 byte // the two bytes of seg before c, decoded
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		escaped := c == '%'
		if escaped {
			if i+2 >= len(seg) {
				return false, ErrInvalidEscape
			}
			hi, ok1 := unhex(seg[i+1])
			lo, ok2 := unhex(seg[i+2])
			if !ok1 || !ok2 {
				return false, ErrInvalidEscape
			}
			i += 2
			switch c = hi<<4 | lo; c {
			case '/':
				return false, ErrEncodedSlash
			case '\\':
				return false, ErrEncodedBackslash
			case 0:
				return false, ErrNUL
			}
		} else {
			if c == '\\' {
				return false, ErrBackslash
			}
			if err := checkControl(c); err != nil {
				return false, err
			}
		}
		if c >= 0x80 || p2 == '%' { // what smuggled looks for, without a call
			if err := smuggled(p2, p1, c); err != nil {
				return false, err
			}
		}
		p2, p1 = p1, c
		switch {
		case escaped && unreserved(c):
			encodedUnreserved = true
			b.append(c)
		case escaped || !plain(c):
			b.appendEscaped(c)
		default:
			b.append(c)
		}
	}
	return encodedUnreserved, nil
}

// smuggled returns the error for c, a decoded byte of a segment that
// follows the decoded bytes p2 and p1 there, when c completes an encoding
// that exists to smuggle ASCII past a check: an overlong UTF-8 sequence
// (a lenient decoder reads "%C0%AE" as ".") or a double-encoded ".", "/"
// or "\\" (a backend that decodes twice reads "%252e" as "."). A decoded
// "%" always comes from "%25": a raw "%" starts an escape. Valid UTF-8
// and other invalid bytes (Latin-1 "%E9") are not its business.
func smuggled(p2, p1, c byte) error {
	switch {
	case c == 0xC0 || c == 0xC1,
		p1 == 0xE0 && 0x80 <= c && c <= 0x9F,
		p1 == 0xF0 && 0x80 <= c && c <= 0x8F:
		return ErrOverlongUTF8
	case p2 == '%':
		hi, ok1 := unhex(p1)
		lo, ok2 := unhex(c)
		if v := hi<<4 | lo; ok1 && ok2 && (v == '.' || v == '/' || v == '\\') {
			return ErrDoubleEncoded
		}
	}
	return nil
}

// isNormal reports whether p, which starts with "/", has only raw pchar
// bytes, no empty segment but a trailing one and no segment starting with
// ".". Such a path is in normal form; this check is a faster equivalent of
// the general loop for the common case.
func isNormal(p string) bool {
	seg := 1 // start of the current segment
	for i := 1; i < len(p); i++ {
		switch c := p[i]; {
		case c == '/':
			if i == seg {
				return false
			}
			seg = i + 1
		case c == '.' && i == seg:
			return false
		case !plain(c):
			return false
		}
	}
	return true
}

// plain reports whether c is an RFC 3986 pchar other than "%": unreserved,
// a sub-delim, ":" or "@". The masks hold one bit per ASCII byte.
func plain(c byte) bool {
	const (
		mask0to63   = 0x2fff7fd200000000
		mask64to127 = 0x47fffffe87ffffff
	)
	switch {
	case c < 64:
		return mask0to63>>c&1 != 0
	case c < 128:
		return mask64to127>>(c-64)&1 != 0
	}
	return false
}

// checkControl returns the error for a byte that is never allowed in a
// request-target, or nil.
func checkControl(c byte) error {
	switch {
	case c == 0:
		return ErrNUL
	case c < 0x20 || c == 0x7f:
		return ErrControlChar
	}
	return nil
}

// dotSegment reports whether seg, a normalized segment, is "." or ".."
// (dots is 1 or 2) and whether that dot segment carries a ";" parameter,
// raw or encoded as "%3B". For any other segment dots is 0.
func dotSegment[T string | []byte](seg T) (dots int, param bool) {
	n := 0
	for n < len(seg) && n < 2 && seg[n] == '.' {
		n++
	}
	if n == 0 {
		return 0, false
	}
	rest := seg[n:]
	switch {
	case len(rest) == 0:
		return n, false
	case rest[0] == ';', len(rest) >= 3 && rest[0] == '%' && rest[1] == '3' && rest[2] == 'B':
		return n, true
	}
	return 0, false
}

// unreserved reports whether c is an RFC 3986 unreserved character, which
// appears decoded in normal form.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

const upperHex = "0123456789ABCDEF"

// A lazybuf is the output of Normalize. While the output is a prefix of the
// input s it is s[:w] and nothing is allocated; buf is allocated at the
// first byte that differs (the same idea as path.Clean's lazybuf, but the
// output may grow past s because raw bytes can be escaped).
type lazybuf struct {
	s   string
	buf []byte
	w   int
}

func (b *lazybuf) append(c byte) {
	if b.buf == nil {
		if b.w < len(b.s) && b.s[b.w] == c {
			b.w++
			return
		}
		b.buf = make([]byte, b.w, len(b.s)+8)
		copy(b.buf, b.s[:b.w])
	}
	b.buf = append(b.buf[:b.w], c)
	b.w++
}

func (b *lazybuf) appendEscaped(c byte) {
	b.append('%')
	b.append(upperHex[c>>4])
	b.append(upperHex[c&0xf])
}

// dotSegment is dotSegment applied to the output from index start to the
// end.
func (b *lazybuf) dotSegment(start int) (dots int, param bool) {
	if b.buf == nil {
		return dotSegment(b.s[start:b.w])
	}
	return dotSegment(b.buf[start:b.w])
}

// lastSlash returns the index of the last "/" of the output before end, or
// 0 when there is none.
func (b *lazybuf) lastSlash(end int) int {
	for i := end - 1; i > 0; i-- {
		if b.index(i) == '/' {
			return i
		}
	}
	return 0
}

func (b *lazybuf) index(i int) byte {
	if b.buf == nil {
		return b.s[i]
	}
	return b.buf[i]
}

// mergeSlashes replaces every run of "/" in the output with one "/".
func (b *lazybuf) mergeSlashes() {
	if b.buf == nil {
		b.buf = []byte(b.s[:b.w])
	}
	w := 0
	for i := 0; i < b.w; i++ {
		if b.buf[i] == '/' && w > 0 && b.buf[w-1] == '/' {
			continue
		}
		b.buf[w] = b.buf[i]
		w++
	}
	b.w = w
}

func (b *lazybuf) string() string {
	if b.buf == nil {
		return b.s[:b.w]
	}
	return string(b.buf[:b.w])
}
