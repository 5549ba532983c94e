package decision

import (
	"net/url"
	"strings"

	"github.com/tollgate-dev/tollgate/pkg/pathnorm"
)

// validMethod reports whether m is an HTTP method token (RFC 9110 §9.1:
// one or more tchar). Methods are case-sensitive and taken exactly as
// sent: "get" is not "GET", and " GET" is no method at all.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !tchar(m[i]) {
			return false
		}
	}
	return true
}

// tchar reports whether c is an RFC 9110 token character.
func tchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// maxOverrides bounds the methods that method overrides may name in one
// request; more is denied 400.
const maxOverrides = 8

// overrideHeaders are the method-override headers frameworks honour
// (Express method-override, Symfony and Laravel, Rails via Rack, Spring's
// HiddenHttpMethodFilter and others).
var overrideHeaders = [...]string{"x-http-method-override", "x-http-method", "x-method-override"}

// methodOverrides calls fn with every method that the request's method
// overrides name, other than its own method: each comma-separated value of
// the override headers and of every _method query parameter, in upper case
// (frameworks upper-case it before use). A method may come
// more than once. It stops when fn returns false, and returns false then,
// or when a value is not a method token or a _method value is badly
// escaped. Empty values name nothing. It does not allocate for a request
// without overrides.
//
// A _method field in a form body is out of reach: tollgate never sees
// bodies.
func methodOverrides(req *Request, fn func(method string) bool) bool {
	for _, h := range overrideHeaders {
		if v, found := req.Headers[h]; found && !eachMethod(v, req.Method, fn) {
			return false
		}
	}
	_, query := pathnorm.SplitTarget(req.Path)
	for query != "" {
		var pair string
		// Some frameworks also split on ";" (Rack before 3, Python before
		// 3.9.2): either separator starts a parameter.
		if i := strings.IndexAny(query, "&;"); i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			pair, query = query, ""
		}
		k, v, _ := strings.Cut(pair, "=")
		if !isMethodParam(k) {
			continue
		}
		v, err := url.QueryUnescape(v)
		if err != nil || !eachMethod(v, req.Method, fn) {
			return false
		}
	}
	return true
}

// isMethodParam reports whether a raw query key names the _method
// parameter to some framework: "_method" in any case and escaping, and the
// names PHP turns into "_method" (".method", " method", "[method").
func isMethodParam(k string) bool {
	if len(k) < len("_method") {
		return false
	}
	if strings.ContainsAny(k, "%+") {
		d, err := url.QueryUnescape(k)
		if err != nil {
			return true // a badly escaped key might be it; deny rather than guess
		}
		k = d
	}
	if len(k) != len("_method") || !strings.EqualFold(k[1:], "method") {
		return false
	}
	switch k[0] {
	case '_', '.', ' ', '[':
		return true
	}
	return false
}

// eachMethod calls fn with the methods of one override value other than
// method, as methodOverrides describes.
func eachMethod(value, method string, fn func(string) bool) bool {
	for value != "" {
		var m string
		m, value, _ = strings.Cut(value, ",")
		m = strings.Trim(m, " \t")
		if m == "" {
			continue
		}
		if !validMethod(m) {
			return false
		}
		// Frameworks upper-case the override before use (Express
		// method-override, Rack, Symfony, Spring, gorilla/handlers), and
		// rules name methods in upper case: "delete" names DELETE. The
		// value as sent is no other method to any of them.
		if up := strings.ToUpper(m); up != method && !fn(up) {
			return false
		}
	}
	return true
}
