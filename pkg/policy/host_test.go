package policy

import (
	"strings"
	"testing"
)

func TestParseAuthority(t *testing.T) {
	tests := map[string]struct {
		authority string
		want      string // "" when rejected
	}{
		"a name":                          {"api.example.com", "api.example.com"},
		"a name and port":                 {"api.example.com:8443", "api.example.com"},
		"upper case is lowered":           {"API.Example.COM", "api.example.com"},
		"one trailing dot is the FQDN":    {"api.example.com.", "api.example.com"},
		"a trailing dot and a port":       {"api.example.com.:443", "api.example.com"},
		"a single label":                  {"localhost", "localhost"},
		"an underscore":                   {"my_svc.internal", "my_svc.internal"},
		"an IPv4 address":                 {"192.0.2.1:80", "192.0.2.1"},
		"an IPv6 literal":                 {"[::1]", "[::1]"},
		"an IPv6 literal with a port":     {"[2001:db8::1]:8080", "[2001:db8::1]"},
		"a label of 63":                   {strings.Repeat("a", 63) + ".com", strings.Repeat("a", 63) + ".com"},
		"empty":                           {"", ""},
		"only a port":                     {":80", ""},
		"repeated dots":                   {"api..example.com", ""},
		"two trailing dots":               {"api.example.com..", ""},
		"a leading dot":                   {".api.example.com", ""},
		"only a dot":                      {".", ""},
		"two ports":                       {"api.example.com:80:80", ""},
		"an empty port":                   {"api.example.com:", ""},
		"a port out of range":             {"api.example.com:65536", ""},
		"a non-numeric port":              {"api.example.com:http", ""},
		"a name in brackets":              {"[api.example.com]", ""},
		"a name in brackets with a port":  {"[api.example.com]:443", ""},
		"an unclosed bracket":             {"[::1", ""},
		"an IPv6 zone":                    {"[fe80::1%25eth0]", ""},
		"an IPv4 address in brackets":     {"[192.0.2.1]", ""},
		"an encoded dot":                  {"api.example.com%2e", ""},
		"an encoded letter":               {"%61pi.example.com", ""},
		"a trailing space":                {"api.example.com ", ""},
		"a trailing tab":                  {"api.example.com\t", ""},
		"a leading space":                 {" api.example.com", ""},
		"a space inside":                  {"api .example.com", ""},
		"a newline":                       {"api.example.com\n", ""},
		"user info":                       {"evil@api.example.com", ""},
		"a path":                          {"api.example.com/x", ""},
		"a backslash":                     {"api.example.com\\", ""},
		"a comma of two hosts":            {"api.example.com,evil.com", ""},
		"a NUL":                           {"api.example.com\x00", ""},
		"non-ASCII":                       {"аpi.example.com", ""},
		"full-width letters":              {"ａｐｉ.example.com", ""},
		"a label over 63":                 {strings.Repeat("a", 64) + ".com", ""},
		"a name over 253":                 {strings.Repeat("a.", 127) + "ab", ""},
		"a short IPv4 form":               {"127.1", ""},
		"a hex IPv4 form":                 {"0x7f.0.0.1", ""},
		"a hex last label":                {"api.0x10", ""},
		"an octal IPv4 form":              {"0177.0.0.1", ""},
		"a numeric top-level label":       {"api.example.123", ""},
		"an IPv4 address with a 5th part": {"1.2.3.4.5", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := ParseAuthority(tc.authority)
			if ok != (tc.want != "") || got != tc.want {
				t.Fatalf("ParseAuthority(%q) = %q, %v; want %q", tc.authority, got, ok, tc.want)
			}
		})
	}
}

func TestParseAuthorityDoesNotAllocate(t *testing.T) {
	for _, a := range []string{"api.example.com", "api.example.com:443", "192.0.2.1"} {
		if n := testing.AllocsPerRun(100, func() { ParseAuthority(a) }); n != 0 {
			t.Errorf("ParseAuthority(%q) allocates %v times", a, n)
		}
	}
}
