package pathnorm

import (
	"errors"
	"net/url"
	"path"
	"strings"
	"testing"
)

// A pathCase is one request-target and what Strict and Normalize make of
// it: a path, or an error.
type pathCase struct {
	in                   string
	strict, normalized   string
	strictErr, normalErr error
}

// same is a case that both functions answer alike.
func same(in, want string) pathCase { return pathCase{in: in, strict: want, normalized: want} }

// sameErr is a case that both functions reject with err.
func sameErr(in string, err error) pathCase {
	return pathCase{in: in, strictErr: err, normalErr: err}
}

// resolved is a case that Strict rejects with err and Normalize resolves.
func resolved(in string, err error, want string) pathCase {
	return pathCase{in: in, strictErr: err, normalized: want}
}

// pathCases is shared by TestStrict, TestNormalize and the seed corpus of
// the fuzz targets.
var pathCases = map[string]pathCase{
	// Paths already in normal form.
	"keeps the root":                           same("/", "/"),
	"keeps a plain path":                       same("/api/v1/users", "/api/v1/users"),
	"keeps a trailing slash":                   same("/a/b/", "/a/b/"),
	"keeps case (matching is case-sensitive)":  same("/Admin/USERS", "/Admin/USERS"),
	"keeps sub-delims, colon and at raw":       same("/a:b@c!$&'()*+,;=", "/a:b@c!$&'()*+,;="),
	"keeps a parameter on an ordinary segment": same("/admin;jsessionid=1/x", "/admin;jsessionid=1/x"),

	// Query and fragment.
	"removes the query":                       same("/a/b?x=1&y=2", "/a/b"),
	"removes an empty query":                  same("/a?", "/a"),
	"removes the fragment":                    same("/a#frag", "/a"),
	"removes a query with a hash inside":      same("/a?x=#/../admin", "/a"),
	"removes a fragment with a question":      same("/a#x?/../admin", "/a"),
	"ends the path at a hash before a query":  same("/api/files#?owner=alice", "/api/files"),
	"does not resolve dots from the query":    same("/a?/../../admin", "/a"),
	"cuts the query after an encoded dot":     resolved("/a/%2e%2e?x=1", ErrDotSegment, "/"),
	"cuts the query after a reserved escape":  same("/a%3a?x=1", "/a%3A"),
	"keeps an encoded question mark":          same("/a%3fb?c", "/a%3Fb"),
	"keeps an encoded hash":                   same("/a%23b", "/a%23b"),
	"does not check escapes in the query":     same("/a?x=%2F%5C%zz%00", "/a"),
	"does not check backslashes in the query": same("/a?x=\\", "/a"),

	// Dot segments.
	"removes a dot segment":             resolved("/a/./b", ErrDotSegment, "/a/b"),
	"resolves a dot-dot segment":        resolved("/a/b/../c", ErrDotSegment, "/a/c"),
	"stops traversal at the root":       resolved("/../../etc/passwd", ErrDotSegment, "/etc/passwd"),
	"stops deep traversal at the root":  resolved("/a/../../../b/../c", ErrDotSegment, "/c"),
	"ends with a slash after a dot":     resolved("/a/.", ErrDotSegment, "/a/"),
	"ends with a slash after a dot-dot": resolved("/a/b/..", ErrDotSegment, "/a/"),
	"resolves a dot-dot to the root":    resolved("/a/..", ErrDotSegment, "/"),
	"resolves a lone dot":               resolved("/.", ErrDotSegment, "/"),
	"resolves a lone dot-dot":           resolved("/..", ErrDotSegment, "/"),
	"keeps three dots as a name":        same("/a/.../b", "/a/.../b"),
	"keeps a dot-prefixed name":         same("/.well-known/x", "/.well-known/x"),
	"keeps a dot-dot-prefixed name":     same("/a/..b/c..", "/a/..b/c.."),
	"rejects a dot after a good prefix": resolved("/api/users/alice/./tasks", ErrDotSegment, "/api/users/alice/tasks"),

	// Encoded dots.
	"resolves %2e%2e":                    resolved("/a/%2e%2e/admin", ErrDotSegment, "/admin"),
	"resolves %2E%2E":                    resolved("/a/%2E%2E/admin", ErrDotSegment, "/admin"),
	"resolves .%2e":                      resolved("/a/.%2e/admin", ErrDotSegment, "/admin"),
	"resolves %2e.":                      resolved("/a/%2e./admin", ErrDotSegment, "/admin"),
	"resolves %2E.":                      resolved("/api/users/alice/%2E./bob/tasks", ErrDotSegment, "/api/users/bob/tasks"),
	"resolves %2e":                       resolved("/a/%2e/b", ErrDotSegment, "/a/b"),
	"resolves a trailing %2e%2e":         resolved("/a/b/%2e%2e", ErrDotSegment, "/a/"),
	"stops %2e%2e traversal at the root": resolved("/%2e%2e/%2e%2e/etc", ErrDotSegment, "/etc"),

	// Double-encoded dots and separators: a backend that decodes twice
	// reads a dot segment, a "/" or a "\\" where tollgate reads "%2e".
	"rejects %252e%252e":                      sameErr("/a/%252e%252e/admin", ErrDoubleEncoded),
	"rejects %252E%252E":                      sameErr("/a/%252E%252E/admin", ErrDoubleEncoded),
	"rejects a lone %252e":                    sameErr("/a/%252e/b", ErrDoubleEncoded),
	"rejects %252e inside a segment":          sameErr("/a/x%252Ey", ErrDoubleEncoded),
	"rejects %252f":                           sameErr("/a%252fb", ErrDoubleEncoded),
	"rejects %252F":                           sameErr("/a%252Fb", ErrDoubleEncoded),
	"rejects %252F used for traversal":        sameErr("/a/..%252F..%252Fadmin", ErrDoubleEncoded),
	"rejects %255c":                           sameErr("/a%255cb", ErrDoubleEncoded),
	"rejects %255C":                           sameErr("/a/..%255C..%255Cadmin", ErrDoubleEncoded),
	"rejects an encoded escape of a dot":      sameErr("/%25%32%65", ErrDoubleEncoded),
	"rejects an encoded escape of a slash":    sameErr("/a%25%32f", ErrDoubleEncoded),
	"rejects %25%252e":                        sameErr("/a/%25%252e", ErrDoubleEncoded),
	"rejects a double-encoded dot-dot param":  sameErr("/a/%252e%252e;/admin", ErrDoubleEncoded),
	"keeps %25 before other hex digits":       same("/a%2541", "/a%2541"),
	"keeps %25 before a digit and a non-hex":  same("/50%252x", "/50%252x"),
	"keeps %25 before an escape of a dot":     resolved("/100%25%2e", ErrEncodedUnreserved, "/100%25."),
	"keeps %25 at the end of a segment":       same("/a%252/e", "/a%252/e"),
	"keeps %25 and a dot in the next segment": same("/a%25/2e", "/a%25/2e"),

	// Empty segments: merged after dot segments are resolved (RFC 3986
	// order), and a ".." that would remove one is ambiguous.
	"merges a double slash":                 resolved("//a//b", ErrEmptySegment, "/a/b"),
	"merges triple slashes":                 resolved("///a///b///", ErrEmptySegment, "/a/b/"),
	"merges slashes only":                   resolved("///", ErrEmptySegment, "/"),
	"merges slashes around a dot":           resolved("/a//.//b", ErrEmptySegment, "/a/b"),
	"merges a slash after a dot-dot":        resolved("/a/b/..//c", ErrDotSegment, "/a/c"),
	"treats a leading double slash as path": resolved("//evil.example/a", ErrEmptySegment, "/evil.example/a"),
	"rejects a dot-dot after a double slash": {
		in: "/a/b//..//c", strictErr: ErrEmptySegment, normalErr: ErrAmbiguousDotSegment,
	},
	"rejects the triple-slash owner switch": {
		in: "/api/users/bob/tasks///../../alice/tasks", strictErr: ErrEmptySegment, normalErr: ErrAmbiguousDotSegment,
	},
	"rejects an encoded dot-dot after a double slash": {
		in: "/api/users/bob//%2e%2e/x", strictErr: ErrEmptySegment, normalErr: ErrAmbiguousDotSegment,
	},
	"rejects a dot-dot after a leading double slash": {
		in: "//..", strictErr: ErrEmptySegment, normalErr: ErrAmbiguousDotSegment,
	},
	"resolves a dot-dot past an emptied segment": resolved("/a/..//b", ErrDotSegment, "/b"),

	// Encoded slashes and backslashes.
	"rejects %2F":                       sameErr("/a%2Fb", ErrEncodedSlash),
	"rejects %2f":                       sameErr("/a%2fb", ErrEncodedSlash),
	"rejects %2F used for traversal":    sameErr("/a/..%2F..%2Fadmin", ErrEncodedSlash),
	"rejects %2F before the query":      sameErr("/a%2F?x", ErrEncodedSlash),
	"rejects %5C":                       sameErr("/a%5Cb", ErrEncodedBackslash),
	"rejects %5c":                       sameErr("/a%5cb", ErrEncodedBackslash),
	"rejects a raw backslash":           sameErr("/a\\b", ErrBackslash),
	"rejects a backslash traversal":     sameErr("/a/..\\admin", ErrBackslash),
	"rejects a leading backslash":       sameErr("/\\..\\admin", ErrBackslash),
	"rejects a backslash after a slash": sameErr("/a/\\", ErrBackslash),

	// NUL and control characters.
	"rejects a raw NUL":                           sameErr("/a\x00b", ErrNUL),
	"rejects %00":                                 sameErr("/a%00b", ErrNUL),
	"rejects a raw NUL in the query":              sameErr("/a?x=\x00", ErrNUL),
	"rejects CR LF":                               sameErr("/a\r\nX-User-Id: 1", ErrControlChar),
	"rejects a tab":                               sameErr("/a\tb", ErrControlChar),
	"rejects DEL":                                 sameErr("/a\x7f", ErrControlChar),
	"rejects a control character in the query":    sameErr("/a?x=\n", ErrControlChar),
	"rejects a control character in the fragment": sameErr("/a#\x1b", ErrControlChar),
	"keeps an encoded control character":          same("/a%0a%7f", "/a%0A%7F"),

	// Invalid escapes.
	"rejects %zz":                         sameErr("/a%zz", ErrInvalidEscape),
	"rejects a half-hex escape":           sameErr("/%g1", ErrInvalidEscape),
	"rejects a truncated %4":              sameErr("/a%4", ErrInvalidEscape),
	"rejects a lone percent":              sameErr("/a%", ErrInvalidEscape),
	"rejects a truncated escape before /": sameErr("/a%4/b", ErrInvalidEscape),
	"rejects a truncated escape before ?": sameErr("/a%4?1", ErrInvalidEscape),
	"rejects a percent before a query":    sameErr("/a%?41", ErrInvalidEscape),
	"rejects an escape with a sign":       sameErr("/a%+1", ErrInvalidEscape),

	// Dot segments with a parameter (Tomcat strips ";..." from segments).
	"rejects ..;x":                          sameErr("/a/..;x/admin", ErrDotSegmentParam),
	"rejects .;x":                           sameErr("/a/.;x/b", ErrDotSegmentParam),
	"rejects ..;":                           sameErr("/public/..;/admin", ErrDotSegmentParam),
	"rejects .;":                            sameErr("/.;/admin", ErrDotSegmentParam),
	"rejects a trailing ..;":                sameErr("/a/..;", ErrDotSegmentParam),
	"rejects %2e%2e;":                       sameErr("/a/%2e%2e;/admin", ErrDotSegmentParam),
	"rejects ..%3b":                         sameErr("/a/..%3b/admin", ErrDotSegmentParam),
	"rejects .%3B":                          sameErr("/a/.%3Bx", ErrDotSegmentParam),
	"rejects ..;x even when it is resolved": sameErr("/a/..;x/..", ErrDotSegmentParam),

	// Unreserved and reserved escapes.
	"decodes unreserved %61":          resolved("/%61dmin", ErrEncodedUnreserved, "/admin"),
	"decodes unreserved %7E":          resolved("/%7Euser", ErrEncodedUnreserved, "/~user"),
	"decodes unreserved %7e":          resolved("/%7euser", ErrEncodedUnreserved, "/~user"),
	"decodes an owner's letter":       resolved("/api/users/%61lice/tasks", ErrEncodedUnreserved, "/api/users/alice/tasks"),
	"decodes every unreserved class":  resolved("/%41%5a%30%39%2D%5F%2E%7a", ErrEncodedUnreserved, "/AZ09-_.z"),
	"uppercases a reserved escape":    same("/a%3ab", "/a%3Ab"),
	"keeps an uppercase escape":       same("/a%3Ab", "/a%3Ab"),
	"keeps an encoded percent":        same("/100%25", "/100%25"),
	"keeps an encoded space":          same("/a%20b", "/a%20b"),
	"keeps an encoded semicolon":      same("/a%3bb", "/a%3Bb"),
	"uppercases an encoded non-ASCII": same("/caf%c3%a9", "/caf%C3%A9"),

	// Overlong UTF-8: never valid, and read as ASCII ("%C0%AE" as ".",
	// "%C0%AF" as "/") by lenient decoders. Encoded or raw, any case.
	"rejects an overlong dot-dot %C0%AE":            sameErr("/a/%C0%AE%C0%AE/admin", ErrOverlongUTF8),
	"rejects an overlong dot-dot %c0%ae":            sameErr("/a/%c0%ae%c0%ae/admin", ErrOverlongUTF8),
	"rejects an overlong dot in mixed case":         sameErr("/a/%c0%AE/b", ErrOverlongUTF8),
	"rejects an overlong slash %C0%AF":              sameErr("/a/..%C0%AF..%C0%AFadmin", ErrOverlongUTF8),
	"rejects an overlong backslash %C1%9C":          sameErr("/a/..%c1%9c..%c1%9cadmin", ErrOverlongUTF8),
	"rejects an overlong NUL %C0%80":                sameErr("/a%C0%80", ErrOverlongUTF8),
	"rejects a lone %C0":                            sameErr("/a%C0", ErrOverlongUTF8),
	"rejects %C1 before an ASCII byte":              sameErr("/a%C1x", ErrOverlongUTF8),
	"rejects a 3-byte overlong dot %E0%80%AE":       sameErr("/a/%E0%80%AE%E0%80%AE/admin", ErrOverlongUTF8),
	"rejects a 3-byte overlong slash %e0%80%af":     sameErr("/a%e0%80%afb", ErrOverlongUTF8),
	"rejects the last 3-byte overlong %E0%9F%BF":    sameErr("/%E0%9F%BF", ErrOverlongUTF8),
	"rejects a 4-byte overlong dot %F0%80%80%AE":    sameErr("/a/%F0%80%80%AE/b", ErrOverlongUTF8),
	"rejects the last 4-byte overlong %f0%8f%bf%bf": sameErr("/%f0%8f%bf%bf", ErrOverlongUTF8),
	"rejects a raw overlong dot-dot":                sameErr("/\xc0\xae\xc0\xae/\xc0\xaf", ErrOverlongUTF8),
	"rejects a raw lead byte before an escape":      sameErr("/a\xe0%80%ae", ErrOverlongUTF8),
	"rejects an escaped lead byte before raw":       sameErr("/a%F0\x80\x80\xae", ErrOverlongUTF8),
	"keeps the euro sign %E2%82%AC":                 same("/%e2%82%ac", "/%E2%82%AC"),
	"keeps the first 3-byte form after E0":          same("/%E0%A0%80", "/%E0%A0%80"),
	"keeps a 4-byte emoji %F0%9F%98%80":             same("/%f0%9f%98%80", "/%F0%9F%98%80"),
	"keeps the first 4-byte form after F0":          same("/%F0%90%80%80", "/%F0%90%80%80"),
	"keeps the first 2-byte form %C2%80":            same("/%C2%80", "/%C2%80"),
	"keeps a Latin-1 byte %E9":                      same("/caf%e9", "/caf%E9"),
	"keeps %E0 before an ASCII byte":                same("/%E0a%80", "/%E0a%80"),
	"keeps %E0 at the end of a segment":             same("/%E0/%80", "/%E0/%80"),
	"keeps %F0 before a 3-byte range continuation":  same("/%F0%90", "/%F0%90"),

	// Raw bytes outside RFC 3986 pchar.
	"escapes raw UTF-8":              same("/café", "/caf%C3%A9"),
	"escapes invalid UTF-8":          same("/\xff\xe9/\xe0", "/%FF%E9/%E0"),
	"escapes a raw space":            same("/a b", "/a%20b"),
	"escapes raw unsafe punctuation": same("/{a}|^`\"<>[]", "/%7Ba%7D%7C%5E%60%22%3C%3E%5B%5D"),

	// Absolute paths and length.
	"rejects the empty path":           sameErr("", ErrNotAbsolute),
	"rejects a query without a path":   sameErr("?a=1", ErrNotAbsolute),
	"rejects a fragment only":          sameErr("#/admin", ErrNotAbsolute),
	"rejects a relative path":          sameErr("a/b", ErrNotAbsolute),
	"rejects a relative dot path":      sameErr("../admin", ErrNotAbsolute),
	"rejects the asterisk form":        sameErr("*", ErrNotAbsolute),
	"rejects the absolute form":        sameErr("http://x/admin", ErrNotAbsolute),
	"rejects an encoded leading slash": sameErr("%2Fadmin", ErrNotAbsolute),
	"accepts a path of MaxLength": same(
		"/"+strings.Repeat("a", MaxLength-1), "/"+strings.Repeat("a", MaxLength-1)),
	"rejects a path over MaxLength": sameErr("/"+strings.Repeat("a", MaxLength), ErrTooLong),
	"rejects a path over MaxLength before decoding": sameErr(
		"/"+strings.Repeat("%61", MaxLength/3+1), ErrTooLong),
	"rejects a path that grows over MaxLength": sameErr("/"+strings.Repeat("é", MaxLength/2-1), ErrTooLong),
	"does not count the query in the length": same(
		"/a?"+strings.Repeat("q", 2*MaxLength), "/a"),
}

// modes are the two functions under test, for tests that run both.
var modes = []struct {
	name string
	fn   func(string) (string, error)
	want func(pathCase) (string, error)
}{
	{"Strict", Strict, func(c pathCase) (string, error) { return c.strict, c.strictErr }},
	{"Normalize", Normalize, func(c pathCase) (string, error) { return c.normalized, c.normalErr }},
}

func TestStrictAndNormalize(t *testing.T) {
	for _, m := range modes {
		for name, tc := range pathCases {
			t.Run(m.name+"/"+name, func(t *testing.T) {
				want, wantErr := m.want(tc)
				got, err := m.fn(tc.in)
				if got != want {
					t.Errorf("%s(%q) = %q, want %q", m.name, tc.in, got, want)
				}
				if wantErr == nil {
					if err != nil {
						t.Fatalf("%s(%q) error = %v, want nil", m.name, tc.in, err)
					}
					for _, again := range modes {
						if p, err := again.fn(got); p != got || err != nil {
							t.Errorf("%s(%q) = %q, %v; want it unchanged", again.name, got, p, err)
						}
					}
					return
				}
				if !errors.Is(err, wantErr) {
					t.Errorf("%s(%q) error = %v, want %v", m.name, tc.in, err, wantErr)
				}
			})
		}
	}
}

func TestSplitTarget(t *testing.T) {
	tests := map[string]struct{ in, path, query string }{
		"no query":                       {"/a", "/a", ""},
		"a query":                        {"/a?x=1", "/a", "x=1"},
		"a query and a fragment":         {"/a?x=1#f", "/a", "x=1"},
		"a hash before the question":     {"/api/files#?owner=alice", "/api/files", ""},
		"a hash inside the query":        {"/a?x=1#?owner=alice", "/a", "x=1"},
		"an empty query":                 {"/a?", "/a", ""},
		"a second question in the query": {"/a?x=?y", "/a", "x=?y"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if p, q := SplitTarget(tc.in); p != tc.path || q != tc.query {
				t.Errorf("SplitTarget(%q) = %q, %q; want %q, %q", tc.in, p, q, tc.path, tc.query)
			}
		})
	}
}

func TestNormalPathsDoNotAllocate(t *testing.T) {
	for _, m := range modes {
		for _, in := range []string{"/", "/api/v1/users/42", "/api/v1/users/42/?page=2#top", "/a:b@c/%3A/~x/", "/.well-known/x"} {
			allocs := testing.AllocsPerRun(100, func() {
				if _, err := m.fn(in); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%s(%q) allocates %v times, want 0", m.name, in, allocs)
			}
		}
	}
}

// maxFuzzInput bounds the inputs the fuzz targets look at: longer ones
// find nothing new (the length checks have their table cases) and make the
// fuzzer spend its time minimizing them.
const maxFuzzInput = 512

// addSeeds adds the table's inputs to a fuzz target's corpus.
func addSeeds(f *testing.F) {
	for _, tc := range pathCases {
		if len(tc.in) <= maxFuzzInput {
			f.Add(tc.in)
		}
	}
}

// FuzzNormalize checks the promises of Strict and Normalize on their own:
// a result is in normal form and stays as it is, a rejection is one of the
// package's errors and does not depend on what surrounds it.
func FuzzNormalize(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > maxFuzzInput {
			return
		}
		strict, strictErr := Strict(in)
		for _, m := range modes {
			out, err := m.fn(in)
			if err != nil {
				if out != "" {
					t.Fatalf("%s(%q) = %q with error %v, want \"\"", m.name, in, out, err)
				}
				checkStaysRejected(t, m.name, m.fn, in, err)
				continue
			}
			checkNormalForm(t, in, out)
			for _, again := range modes {
				if p, err := again.fn(out); p != out || err != nil {
					t.Fatalf("%s(%q) = %q; %s(%q) = %q, %v; want it unchanged", m.name, in, out, again.name, out, p, err)
				}
			}
		}
		// Normalize only adds to what Strict accepts, and agrees with it.
		if strictErr == nil {
			if norm, err := Normalize(in); norm != strict || err != nil {
				t.Fatalf("Strict(%q) = %q but Normalize = %q, %v", in, strict, norm, err)
			}
		}
	})
}

// checkStaysRejected checks that a rejection does not depend on what
// follows the rejected part, nor on an ordinary segment before it: the
// same input with a prefix or a suffix is rejected for the same reason (or
// for being too long).
func checkStaysRejected(t *testing.T, name string, fn func(string) (string, error), in string, err error) {
	t.Helper()
	if !isSentinel(err) {
		t.Fatalf("%s(%q) error = %v, want one of the package's sentinels", name, in, err)
	}
	derived := []string{in + "?q", in + "#f", in + "?q#f"}
	if strings.HasPrefix(in, "/") {
		derived = append(derived, "/a"+in, in+"/b", in+"/")
	}
	for _, d := range derived {
		_, err2 := fn(d)
		if !errors.Is(err2, err) && !errors.Is(err2, ErrTooLong) {
			t.Fatalf("%s(%q) error = %v, but %s(%q) error = %v", name, in, err, name, d, err2)
		}
	}
}

// FuzzDifferential is the differential target: for any path that Strict
// or Normalize accepts, the matched path is the one that Go's net/url with
// path.Clean and a WHATWG URL Standard resolver make of the same target,
// so that every backend routes the authorized path the same way. A path
// that Strict accepts is also left as it is by both resolvers.
func FuzzDifferential(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > maxFuzzInput {
			return
		}
		for _, m := range modes {
			out, err := m.fn(in)
			if err != nil {
				continue
			}
			matched := mustUnescape(t, out)
			raw, _ := SplitTarget(in)

			// net/url and path.Clean, as a Go router sees the request.
			target, _, _ := strings.Cut(in, "#")
			u, err := url.ParseRequestURI(target)
			if err != nil {
				t.Fatalf("%s(%q) = %q, but net/url rejects it: %v", m.name, in, out, err)
			}
			cleaned := path.Clean(u.Path)
			last := u.Path[strings.LastIndexByte(u.Path, '/')+1:]
			wantTrailing := cleaned != "/" && (last == "" || last == "." || last == "..")
			if want := cleaned + map[bool]string{true: "/"}[wantTrailing]; matched != want {
				t.Fatalf("%s(%q) = %q, decoded %q; net/url + path.Clean give %q", m.name, in, out, matched, want)
			}

			// A WHATWG URL Standard resolver, with slashes merged after it
			// as Normalize does.
			whatwg := mustUnescape(t, resolveWHATWG(raw))
			if merged := mergeSlashes(whatwg); matched != merged {
				t.Fatalf("%s(%q) = %q, decoded %q; the WHATWG resolver gives %q (merged %q)", m.name, in, out, matched, whatwg, merged)
			}
			if m.name == "Strict" && (whatwg != mustUnescape(t, raw) || cleaned != path.Clean(mustUnescape(t, raw))) {
				t.Fatalf("Strict(%q) = %q, but a resolver changes it: WHATWG %q, path.Clean %q", in, out, whatwg, cleaned)
			}
		}
	})
}

// resolveWHATWG resolves the path of a special-scheme URL (http, https) as
// the URL Standard's path state does: "\\" is a separator, "." and ".."
// are recognized raw or percent-encoded in any case, and empty segments
// are segments (".." removes one). Escapes are left as they are.
func resolveWHATWG(p string) string {
	var parts []string
	start := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' && p[i] != '\\' {
			continue
		}
		parts = append(parts, p[start:i])
		start = i + 1
	}
	var out []string
	for i, seg := range parts {
		last := i == len(parts)-1
		switch lower := strings.ToLower(seg); lower {
		case "..", ".%2e", "%2e.", "%2e%2e":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		case ".", "%2e":
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/")
}

func mergeSlashes(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return p
}

func mustUnescape(t *testing.T, p string) string {
	t.Helper()
	s, err := url.PathUnescape(p)
	if err != nil {
		t.Fatalf("url.PathUnescape(%q): %v", p, err)
	}
	return s
}

func isSentinel(err error) bool {
	for _, s := range []error{
		ErrTooLong, ErrNotAbsolute, ErrInvalidEscape, ErrEncodedSlash, ErrEncodedBackslash,
		ErrBackslash, ErrNUL, ErrControlChar, ErrDotSegmentParam, ErrDotSegment, ErrEmptySegment,
		ErrEncodedUnreserved, ErrAmbiguousDotSegment, ErrOverlongUTF8, ErrDoubleEncoded,
	} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// checkNormalForm checks the properties of the package comment on out.
func checkNormalForm(t *testing.T, in, out string) {
	t.Helper()
	if !strings.HasPrefix(out, "/") {
		t.Fatalf("Normalize(%q) = %q, want a leading /", in, out)
	}
	if len(out) > MaxLength {
		t.Fatalf("Normalize(%q) has length %d, want at most %d", in, len(out), MaxLength)
	}
	for _, bad := range []string{"//", "?", "#", "\\", "%2F", "%2f", "%5C", "%5c", "%00"} {
		if strings.Contains(out, bad) {
			t.Fatalf("Normalize(%q) = %q, contains %q", in, out, bad)
		}
	}
	segs := strings.Split(out[1:], "/")
	for i, seg := range segs {
		if seg == "" && i != len(segs)-1 {
			t.Fatalf("Normalize(%q) = %q, has an empty segment", in, out)
		}
		trimmed := strings.TrimLeft(seg, ".")
		if n := len(seg) - len(trimmed); (n == 1 || n == 2) &&
			(trimmed == "" || strings.HasPrefix(trimmed, ";") || strings.HasPrefix(trimmed, "%3B")) {
			t.Fatalf("Normalize(%q) = %q, has the dot segment %q", in, out, seg)
		}
	}
	if upper := strings.ToUpper(out); strings.Contains(upper, "%252E") || strings.Contains(upper, "%252F") || strings.Contains(upper, "%255C") {
		t.Fatalf("Normalize(%q) = %q, has a double-encoded dot or separator", in, out)
	}
	for _, seg := range segs {
		b := []byte(mustUnescape(t, seg))
		for i, c := range b {
			if c == 0xC0 || c == 0xC1 || i > 0 && (b[i-1] == 0xE0 && c&0xE0 == 0x80 || b[i-1] == 0xF0 && c&0xF0 == 0x80) {
				t.Fatalf("Normalize(%q) = %q, has overlong UTF-8 in %q", in, out, seg)
			}
		}
	}
	for i := 0; i < len(out); i++ {
		c := out[i]
		switch {
		case c == '%':
			if i+2 >= len(out) {
				t.Fatalf("Normalize(%q) = %q, has a truncated escape", in, out)
			}
			hi, ok1 := unhexUpper(out[i+1])
			lo, ok2 := unhexUpper(out[i+2])
			if !ok1 || !ok2 {
				t.Fatalf("Normalize(%q) = %q, has an escape that is not uppercase hex at %d", in, out, i)
			}
			if v := hi<<4 | lo; isUnreserved(v) {
				t.Fatalf("Normalize(%q) = %q, has an escaped unreserved %q", in, out, v)
			}
			i += 2
		case c == '/' || isUnreserved(c) || strings.IndexByte("!$&'()*+,;=:@", c) >= 0:
		default:
			t.Fatalf("Normalize(%q) = %q, has the byte %q outside pchar", in, out, c)
		}
	}
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0
}

func unhexUpper(c byte) (byte, bool) {
	if i := strings.IndexByte("0123456789ABCDEF", c); i >= 0 {
		return byte(i), true
	}
	return 0, false
}

// BenchmarkNormalize measures Normalize against path.Clean on the same
// input, the baseline to report ratios against.
func BenchmarkNormalize(b *testing.B) {
	inputs := map[string]string{
		"normal":       "/api/v1/users/42/orders",
		"normal-query": "/api/v1/users/42/orders?page=2&sort=desc",
		"dirty":        "//api/v1/./users/%34%32/../42/orders/%3a",
		"non-ascii":    "/api/v1/users/josé/orders",
	}
	for name, in := range inputs {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Normalize(in); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/baseline-path.Clean", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = path.Clean(in)
			}
		})
	}
}

func TestPlainMatchesPchar(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := isUnreserved(byte(c)) || strings.IndexByte("!$&'()*+,;=:@", byte(c)) >= 0
		if got := plain(byte(c)); got != want {
			t.Errorf("plain(%q) = %v, want %v", byte(c), got, want)
		}
	}
}
