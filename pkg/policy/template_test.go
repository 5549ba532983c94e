package policy

import (
	"slices"
	"testing"
)

func TestTemplateMatch(t *testing.T) {
	tests := map[string]struct {
		template string
		path     string
		match    bool
		captures []string
	}{
		"literal path matches itself":                {"/api/health", "/api/health", true, nil},
		"literal path is case-sensitive":             {"/api/health", "/api/Health", false, nil},
		"literal path does not match a trailing /":   {"/api/health", "/api/health/", false, nil},
		"literal path does not match a longer path":  {"/api/health", "/api/health/x", false, nil},
		"literal path does not match a shorter path": {"/api/health", "/api", false, nil},
		"variable captures one segment":              {"/users/{id}", "/users/alice", true, []string{"alice"}},
		"variable does not match two segments":       {"/users/{id}", "/users/alice/x", false, nil},
		"variable does not match an empty segment":   {"/users/{id}", "/users/", false, nil},
		"star matches one segment":                   {"/users/*/tasks", "/users/bob/tasks", true, nil},
		"star does not match an empty segment":       {"/users/*", "/users/", false, nil},
		"double star matches zero segments":          {"/users/{id}/tasks/**", "/users/alice/tasks", true, []string{"alice"}},
		"double star matches a trailing slash":       {"/users/{id}/tasks/**", "/users/alice/tasks/", true, []string{"alice"}},
		"double star matches many segments":          {"/users/{id}/tasks/**", "/users/alice/tasks/1/notes/2", true, []string{"alice"}},
		"double star needs its prefix":               {"/users/{id}/tasks/**", "/users/alice/task", false, nil},
		"root double star matches root":              {"/**", "/", true, nil},
		"root double star matches anything":          {"/**", "/a/b", true, nil},
		"an escaped literal matches its normal form": {"/caf%C3%A9/{id}", "/caf%C3%A9/x", true, []string{"x"}},
		"two variables are captured in order":        {"/orgs/{org}/users/{user}", "/orgs/acme/users/bob", true, []string{"acme", "bob"}},
		"relative path never matches":                {"/a", "a", false, nil},
		"empty path never matches":                   {"/a", "", false, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tmpl, err := ParseTemplate(tc.template)
			if err != nil {
				t.Fatalf("ParseTemplate(%q): %v", tc.template, err)
			}
			got, ok := tmpl.Match(tc.path, nil)
			if ok != tc.match {
				t.Fatalf("Match(%q) = %v, want %v", tc.path, ok, tc.match)
			}
			if !slices.Equal(got, tc.captures) {
				t.Errorf("captures = %q, want %q", got, tc.captures)
			}
		})
	}
}

func TestTemplateMatchKeepsCallerCapturesOnMismatch(t *testing.T) {
	tmpl, err := ParseTemplate("/users/{id}/x")
	if err != nil {
		t.Fatal(err)
	}
	got, ok := tmpl.Match("/users/alice/y", []string{"before"})
	if ok || !slices.Equal(got, []string{"before"}) {
		t.Fatalf("Match = %q, %v; want [before], false", got, ok)
	}
}

func TestParseTemplateErrors(t *testing.T) {
	tests := map[string]string{
		"double star not last":         "/a/**/b",
		"relative template":            "a/b",
		"partial variable":             "/a/x{id}",
		"partial wildcard":             "/a/x*",
		"duplicate variable":           "/a/{id}/{id}",
		"variable that is not an name": "/a/{1x}",
		"empty variable":               "/a/{}",
		"empty inner segment":          "/a//b",
		"dot segment":                  "/a/../b",
		"percent sign":                 "/a/%2F",
		"query in template":            "/a?x=1",
		"raw non-ASCII literal":        "/caf\u00e9",
		"lower-case escape":            "/a%3ab",
		"escaped unreserved character": "/%61",
	}
	for name, raw := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseTemplate(raw); err == nil {
				t.Fatalf("ParseTemplate(%q) succeeded, want an error", raw)
			}
		})
	}
}

func BenchmarkTemplateMatch(b *testing.B) {
	tmpl, err := ParseTemplate("/api/users/{userId}/tasks/**")
	if err != nil {
		b.Fatal(err)
	}
	captures := make([]string, 0, 4)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := tmpl.Match("/api/users/alice/tasks/42", captures[:0]); !ok {
			b.Fatal("no match")
		}
	}
}

func TestHostMatch(t *testing.T) {
	tests := map[string]struct {
		host      Host
		authority string
		match     bool
	}{
		"exact":                         {Host{Name: "api.example.com"}, "api.example.com", true},
		"exact ignores port":            {Host{Name: "api.example.com"}, "api.example.com:8443", true},
		"exact ignores case":            {Host{Name: "api.example.com"}, "API.Example.COM", true},
		"exact ignores trailing dot":    {Host{Name: "api.example.com"}, "api.example.com.", true},
		"exact rejects other host":      {Host{Name: "api.example.com"}, "evil.com", false},
		"exact rejects suffix trick":    {Host{Name: "example.com"}, "evilexample.com", false},
		"wildcard matches a subdomain":  {Host{Name: ".example.com", Wildcard: true}, "a.example.com", true},
		"wildcard matches deeper names": {Host{Name: ".example.com", Wildcard: true}, "a.b.example.com", true},
		"wildcard rejects the apex":     {Host{Name: ".example.com", Wildcard: true}, "example.com", false},
		"wildcard rejects suffix trick": {Host{Name: ".example.com", Wildcard: true}, "evilexample.com", false},
		"ipv6 literal with port":        {Host{Name: "[::1]"}, "[::1]:8080", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			host, ok := ParseAuthority(tc.authority)
			if !ok {
				t.Fatalf("ParseAuthority(%q) rejects it", tc.authority)
			}
			if got := tc.host.Match(host); got != tc.match {
				t.Fatalf("Match(%q) = %v, want %v", tc.authority, got, tc.match)
			}
		})
	}
}

func TestMatchPrefix(t *testing.T) {
	tests := map[string]struct {
		prefix, path string
		match        bool
	}{
		"root matches everything":         {"/", "/x", true},
		"prefix matches itself":           {"/api", "/api", true},
		"prefix matches a sub-path":       {"/api", "/api/x", true},
		"prefix is segment-wise":          {"/api", "/apix", false},
		"prefix with slash needs a slash": {"/api/", "/api", false},
		"prefix with slash matches below": {"/api/", "/api/x", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := MatchPrefix(tc.prefix, tc.path); got != tc.match {
				t.Fatalf("MatchPrefix(%q, %q) = %v, want %v", tc.prefix, tc.path, got, tc.match)
			}
		})
	}
}
