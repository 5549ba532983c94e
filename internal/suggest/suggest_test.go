package suggest

import "testing"

func TestNearest(t *testing.T) {
	fields := []string{"name", "methods", "path", "owner", "anonymous", "limits"}
	tests := map[string]struct {
		name, want string
	}{
		"a missing letter":               {"anonymus", "anonymous"},
		"two letters swapped":            {"ownre", "owner"},
		"another case":                   {"Path", "path"},
		"a plural":                       {"limit", "limits"},
		"the start of a name":            {"anon", "anonymous"},
		"nothing near":                   {"tiers", ""},
		"a short name needs a near one":  {"pa", ""},
		"an exact name is no suggestion": {"path", ""},
		"the nearest of two":             {"metods", "methods"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Nearest(tc.name, fields); got != tc.want {
				t.Errorf("Nearest(%q) = %q, want %q", tc.name, got, tc.want)
			}
		})
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "ab", 2}, {"kitten", "sitting", 3}, {"policy-dir", "polcy-dir", 1},
	} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
