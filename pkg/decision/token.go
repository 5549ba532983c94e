package decision

import (
	"net/url"
	"strings"

	"github.com/tollgate-dev/tollgate/pkg/pathnorm"
	"github.com/tollgate-dev/tollgate/pkg/policy"
)

// extractToken returns the token from the first source that has one.
func extractToken(sources []policy.TokenSource, req *Request) (string, bool) {
	for _, s := range sources {
		var v string
		switch {
		case s.Header != "":
			v = req.Headers[s.Header]
			if s.Prefix != "" {
				if len(v) < len(s.Prefix) || !strings.EqualFold(v[:len(s.Prefix)], s.Prefix) {
					continue
				}
				v = v[len(s.Prefix):]
			}
		case s.Cookie != "":
			v = cookieValue(req.Headers["cookie"], s.Cookie)
		case s.Query != "":
			v = queryValue(req.Path, s.Query)
		}
		if v = strings.TrimSpace(v); v != "" {
			return v, true
		}
	}
	return "", false
}

// cookieValue returns the value of the named cookie in a Cookie header.
func cookieValue(header, name string) string {
	for header != "" {
		var part string
		part, header, _ = strings.Cut(header, ";")
		part = strings.TrimSpace(part)
		k, v, ok := strings.Cut(part, "=")
		if ok && k == name {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// queryValue returns the value of a query parameter of a raw request
// target, unescaped. It returns "" when the parameter is absent, badly
// escaped, or given more than once with different values: frameworks
// disagree on which of several values counts (first, last, all), so an
// ambiguous value must not decide anything. The query is what
// pathnorm.SplitTarget says it is: a "?" after a "#" starts nothing.
func queryValue(target, name string) string {
	_, query := pathnorm.SplitTarget(target)
	var value string
	found := false
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		k, v, _ := strings.Cut(pair, "=")
		if k, err := url.QueryUnescape(k); err != nil || k != name {
			continue
		}
		v, err := url.QueryUnescape(v)
		if err != nil || (found && v != value) {
			return ""
		}
		value, found = v, true
	}
	return value
}
