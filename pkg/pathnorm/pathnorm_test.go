package pathnorm

import (
	"errors"
	"net/url"
	"path"
	"strings"
	"testing"
)

type normalizeCase struct {
	in      string
	want    string
	wantErr error
}

// normalizeCases is shared by TestNormalize and the seed corpus of
// FuzzNormalize.
var normalizeCases = map[string]normalizeCase{
	// Paths already in normal form.
	"keeps the root":                          {in: "/", want: "/"},
	"keeps a plain path":                      {in: "/api/v1/users", want: "/api/v1/users"},
	"keeps a trailing slash":                  {in: "/a/b/", want: "/a/b/"},
	"keeps case (matching is case-sensitive)": {in: "/Admin/USERS", want: "/Admin/USERS"},
	"keeps sub-delims, colon and at raw":      {in: "/a:b@c!$&'()*+,;=", want: "/a:b@c!$&'()*+,;="},
	"keeps a parameter on an ordinary segment": {
		in: "/admin;jsessionid=1/x", want: "/admin;jsessionid=1/x",
	},

	// Query and fragment.
	"removes the query":                       {in: "/a/b?x=1&y=2", want: "/a/b"},
	"removes an empty query":                  {in: "/a?", want: "/a"},
	"removes the fragment":                    {in: "/a#frag", want: "/a"},
	"removes a query with a hash inside":      {in: "/a?x=#/../admin", want: "/a"},
	"removes a fragment with a question":      {in: "/a#x?/../admin", want: "/a"},
	"does not resolve dots from the query":    {in: "/a?/../../admin", want: "/a"},
	"cuts the query after an encoded dot":     {in: "/a/%2e%2e?x=1", want: "/"},
	"cuts the query after a reserved escape":  {in: "/a%3a?x=1", want: "/a%3A"},
	"keeps an encoded question mark":          {in: "/a%3fb?c", want: "/a%3Fb"},
	"keeps an encoded hash":                   {in: "/a%23b", want: "/a%23b"},
	"does not check escapes in the query":     {in: "/a?x=%2F%5C%zz%00", want: "/a"},
	"does not check backslashes in the query": {in: "/a?x=\\", want: "/a"},

	// Dot segments.
	"removes a dot segment":             {in: "/a/./b", want: "/a/b"},
	"resolves a dot-dot segment":        {in: "/a/b/../c", want: "/a/c"},
	"stops traversal at the root":       {in: "/../../etc/passwd", want: "/etc/passwd"},
	"stops deep traversal at the root":  {in: "/a/../../../b/../c", want: "/c"},
	"ends with a slash after a dot":     {in: "/a/.", want: "/a/"},
	"ends with a slash after a dot-dot": {in: "/a/b/..", want: "/a/"},
	"resolves a dot-dot to the root":    {in: "/a/..", want: "/"},
	"resolves a lone dot":               {in: "/.", want: "/"},
	"resolves a lone dot-dot":           {in: "/..", want: "/"},
	"keeps three dots as a name":        {in: "/a/.../b", want: "/a/.../b"},
	"keeps a dot-prefixed name":         {in: "/.well-known/x", want: "/.well-known/x"},
	"keeps a dot-dot-prefixed name":     {in: "/a/..b/c..", want: "/a/..b/c.."},

	// Encoded dots.
	"resolves %2e%2e":                         {in: "/a/%2e%2e/admin", want: "/admin"},
	"resolves %2E%2E":                         {in: "/a/%2E%2E/admin", want: "/admin"},
	"resolves .%2e":                           {in: "/a/.%2e/admin", want: "/admin"},
	"resolves %2e.":                           {in: "/a/%2e./admin", want: "/admin"},
	"resolves %2e":                            {in: "/a/%2e/b", want: "/a/b"},
	"resolves a trailing %2e%2e":              {in: "/a/b/%2e%2e", want: "/a/"},
	"stops %2e%2e traversal at the root":      {in: "/%2e%2e/%2e%2e/etc", want: "/etc"},
	"does not decode %252e twice":             {in: "/a/%252e%252e/admin", want: "/a/%252e%252e/admin"},
	"does not decode %252F twice":             {in: "/a%252Fb", want: "/a%252Fb"},
	"uppercases only the escape in %252f":     {in: "/a%252f", want: "/a%252f"},
	"does not decode an encoded escape twice": {in: "/%25%32%65", want: "/%252e"},

	// Repeated slashes.
	"merges a double slash":                 {in: "//a//b", want: "/a/b"},
	"merges triple slashes":                 {in: "///a///b///", want: "/a/b/"},
	"merges slashes only":                   {in: "///", want: "/"},
	"merges slashes around a dot":           {in: "/a//.//b", want: "/a/b"},
	"merges slashes around a dot-dot":       {in: "/a/b//..//c", want: "/a/c"},
	"treats a leading double slash as path": {in: "//evil.example/a", want: "/evil.example/a"},

	// Encoded slashes and backslashes.
	"rejects %2F":                       {in: "/a%2Fb", wantErr: ErrEncodedSlash},
	"rejects %2f":                       {in: "/a%2fb", wantErr: ErrEncodedSlash},
	"rejects %2F used for traversal":    {in: "/a/..%2F..%2Fadmin", wantErr: ErrEncodedSlash},
	"rejects %2F before the query":      {in: "/a%2F?x", wantErr: ErrEncodedSlash},
	"rejects %5C":                       {in: "/a%5Cb", wantErr: ErrEncodedBackslash},
	"rejects %5c":                       {in: "/a%5cb", wantErr: ErrEncodedBackslash},
	"rejects a raw backslash":           {in: "/a\\b", wantErr: ErrBackslash},
	"rejects a backslash traversal":     {in: "/a/..\\admin", wantErr: ErrBackslash},
	"rejects a leading backslash":       {in: "/\\..\\admin", wantErr: ErrBackslash},
	"rejects a backslash after a slash": {in: "/a/\\", wantErr: ErrBackslash},

	// NUL and control characters.
	"rejects a raw NUL":                           {in: "/a\x00b", wantErr: ErrNUL},
	"rejects %00":                                 {in: "/a%00b", wantErr: ErrNUL},
	"rejects a raw NUL in the query":              {in: "/a?x=\x00", wantErr: ErrNUL},
	"rejects CR LF":                               {in: "/a\r\nX-User-Id: 1", wantErr: ErrControlChar},
	"rejects a tab":                               {in: "/a\tb", wantErr: ErrControlChar},
	"rejects DEL":                                 {in: "/a\x7f", wantErr: ErrControlChar},
	"rejects a control character in the query":    {in: "/a?x=\n", wantErr: ErrControlChar},
	"rejects a control character in the fragment": {in: "/a#\x1b", wantErr: ErrControlChar},
	"keeps an encoded control character":          {in: "/a%0a%7f", want: "/a%0A%7F"},

	// Invalid escapes.
	"rejects %zz":                         {in: "/a%zz", wantErr: ErrInvalidEscape},
	"rejects a half-hex escape":           {in: "/%g1", wantErr: ErrInvalidEscape},
	"rejects a truncated %4":              {in: "/a%4", wantErr: ErrInvalidEscape},
	"rejects a lone percent":              {in: "/a%", wantErr: ErrInvalidEscape},
	"rejects a truncated escape before /": {in: "/a%4/b", wantErr: ErrInvalidEscape},
	"rejects a truncated escape before ?": {in: "/a%4?1", wantErr: ErrInvalidEscape},
	"rejects a percent before a query":    {in: "/a%?41", wantErr: ErrInvalidEscape},
	"rejects an escape with a sign":       {in: "/a%+1", wantErr: ErrInvalidEscape},

	// Dot segments with a parameter (Tomcat strips ";..." from segments).
	"rejects ..;x":                          {in: "/a/..;x/admin", wantErr: ErrDotSegmentParam},
	"rejects .;x":                           {in: "/a/.;x/b", wantErr: ErrDotSegmentParam},
	"rejects ..;":                           {in: "/public/..;/admin", wantErr: ErrDotSegmentParam},
	"rejects .;":                            {in: "/.;/admin", wantErr: ErrDotSegmentParam},
	"rejects a trailing ..;":                {in: "/a/..;", wantErr: ErrDotSegmentParam},
	"rejects %2e%2e;":                       {in: "/a/%2e%2e;/admin", wantErr: ErrDotSegmentParam},
	"rejects ..%3b":                         {in: "/a/..%3b/admin", wantErr: ErrDotSegmentParam},
	"rejects .%3B":                          {in: "/a/.%3Bx", wantErr: ErrDotSegmentParam},
	"rejects ..;x even when it is resolved": {in: "/a/..;x/..", wantErr: ErrDotSegmentParam},

	// Unreserved and reserved escapes.
	"decodes unreserved %61":          {in: "/%61dmin", want: "/admin"},
	"decodes unreserved %7E":          {in: "/%7Euser", want: "/~user"},
	"decodes unreserved %7e":          {in: "/%7euser", want: "/~user"},
	"decodes every unreserved class":  {in: "/%41%5a%30%39%2D%5F%2E%7a", want: "/AZ09-_.z"},
	"uppercases a reserved escape":    {in: "/a%3ab", want: "/a%3Ab"},
	"keeps an uppercase escape":       {in: "/a%3Ab", want: "/a%3Ab"},
	"keeps an encoded percent":        {in: "/100%25", want: "/100%25"},
	"keeps an encoded space":          {in: "/a%20b", want: "/a%20b"},
	"keeps an encoded semicolon":      {in: "/a%3bb", want: "/a%3Bb"},
	"uppercases an encoded non-ASCII": {in: "/caf%c3%a9", want: "/caf%C3%A9"},

	// Raw bytes outside RFC 3986 pchar.
	"escapes raw UTF-8":              {in: "/café", want: "/caf%C3%A9"},
	"escapes invalid UTF-8":          {in: "/\xc0\xae\xc0\xae/\xc0\xaf", want: "/%C0%AE%C0%AE/%C0%AF"},
	"escapes a raw space":            {in: "/a b", want: "/a%20b"},
	"escapes raw unsafe punctuation": {in: "/{a}|^`\"<>[]", want: "/%7Ba%7D%7C%5E%60%22%3C%3E%5B%5D"},

	// Absolute paths and length.
	"rejects the empty path":           {in: "", wantErr: ErrNotAbsolute},
	"rejects a query without a path":   {in: "?a=1", wantErr: ErrNotAbsolute},
	"rejects a fragment only":          {in: "#/admin", wantErr: ErrNotAbsolute},
	"rejects a relative path":          {in: "a/b", wantErr: ErrNotAbsolute},
	"rejects a relative dot path":      {in: "../admin", wantErr: ErrNotAbsolute},
	"rejects the asterisk form":        {in: "*", wantErr: ErrNotAbsolute},
	"rejects the absolute form":        {in: "http://x/admin", wantErr: ErrNotAbsolute},
	"rejects an encoded leading slash": {in: "%2Fadmin", wantErr: ErrNotAbsolute},
	"accepts a path of MaxLength": {
		in: "/" + strings.Repeat("a", MaxLength-1), want: "/" + strings.Repeat("a", MaxLength-1),
	},
	"rejects a path over MaxLength": {
		in: "/" + strings.Repeat("a", MaxLength), wantErr: ErrTooLong,
	},
	"rejects a path over MaxLength before decoding": {
		in: "/" + strings.Repeat("%61", MaxLength/3+1), wantErr: ErrTooLong,
	},
	"rejects a path that grows over MaxLength": {
		in: "/" + strings.Repeat("é", MaxLength/2-1), wantErr: ErrTooLong,
	},
	"does not count the query in the length": {
		in: "/a?" + strings.Repeat("q", 2*MaxLength), want: "/a",
	},
}

func TestNormalize(t *testing.T) {
	for name, tc := range normalizeCases {
		t.Run(name, func(t *testing.T) {
			got, err := Normalize(tc.in)
			if got != tc.want {
				t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Normalize(%q) error = %v, want nil", tc.in, err)
				}
				if again, err := Normalize(got); again != got || err != nil {
					t.Errorf("Normalize(%q) = %q, %v; want it unchanged", got, again, err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Normalize(%q) error = %v, want %v", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestNormalizeDoesNotAllocateForNormalPaths(t *testing.T) {
	for _, in := range []string{"/", "/api/v1/users/42", "/api/v1/users/42/?page=2#top", "/a:b@c/%3A/~x/"} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := Normalize(in); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Normalize(%q) allocates %v times, want 0", in, allocs)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, tc := range normalizeCases {
		// Seeds of MaxLength make each mutation and minimization slow;
		// the length checks have their table cases.
		if len(tc.in) <= 256 {
			f.Add(tc.in)
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := Normalize(in)
		if err != nil {
			if out != "" {
				t.Fatalf("Normalize(%q) = %q with error %v, want \"\"", in, out, err)
			}
			checkStaysRejected(t, in, err)
			return
		}
		checkNormalForm(t, in, out)
		if again, err := Normalize(out); again != out || err != nil {
			t.Fatalf("Normalize(%q) = %q, %v; Normalize(%q) = %q, %v; want idempotent",
				in, out, nil, out, again, err)
		}
		checkAgainstPathClean(t, in, out)
	})
}

// checkStaysRejected checks that a rejection does not depend on what
// surrounds the rejected part: the same input with a prefix or a suffix is
// rejected for the same reason (or for being too long).
func checkStaysRejected(t *testing.T, in string, err error) {
	t.Helper()
	if !isSentinel(err) {
		t.Fatalf("Normalize(%q) error = %v, want one of the package's sentinels", in, err)
	}
	derived := []string{in + "?q", in + "#f", in + "?q#f"}
	if strings.HasPrefix(in, "/") {
		derived = append(derived, "/a"+in, "/a/b/.."+in, in+"/b", "/"+in, in+"/")
	}
	for _, d := range derived {
		_, err2 := Normalize(d)
		if !errors.Is(err2, err) && !errors.Is(err2, ErrTooLong) {
			t.Fatalf("Normalize(%q) error = %v, but Normalize(%q) error = %v", in, err, d, err2)
		}
	}
}

func isSentinel(err error) bool {
	for _, s := range []error{
		ErrTooLong, ErrNotAbsolute, ErrInvalidEscape, ErrEncodedSlash, ErrEncodedBackslash,
		ErrBackslash, ErrNUL, ErrControlChar, ErrDotSegmentParam,
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

// checkAgainstPathClean compares Normalize with an independent
// implementation: decode every escape of the path with net/url and resolve
// it with path.Clean. Because encoded slashes are rejected, decoding does
// not create or remove segments, so both must agree apart from the trailing
// slash, which Normalize keeps.
func checkAgainstPathClean(t *testing.T, in, out string) {
	t.Helper()
	p, _, _ := strings.Cut(in, "?")
	p, _, _ = strings.Cut(p, "#")
	decodedIn, err := url.PathUnescape(p)
	if err != nil {
		t.Fatalf("Normalize(%q) = %q, but url.PathUnescape(%q): %v", in, out, p, err)
	}
	decodedOut, err := url.PathUnescape(out)
	if err != nil {
		t.Fatalf("url.PathUnescape(Normalize(%q) = %q): %v", in, out, err)
	}
	if want, got := path.Clean(decodedIn), path.Clean(decodedOut); got != want || decodedOut != want && decodedOut != want+"/" {
		t.Fatalf("Normalize(%q) = %q, decoded %q; path.Clean of the decoded input is %q", in, out, decodedOut, want)
	}
	last := decodedIn[strings.LastIndexByte(decodedIn, '/')+1:]
	wantTrailing := out == "/" || last == "" || last == "." || last == ".."
	if strings.HasSuffix(out, "/") != wantTrailing {
		t.Fatalf("Normalize(%q) = %q, want a trailing slash: %v", in, out, wantTrailing)
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
