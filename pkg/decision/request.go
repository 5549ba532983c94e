package decision

import "strings"

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
