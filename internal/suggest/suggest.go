// Package suggest finds the name a user most likely meant: the flag for a
// mistyped flag, the field for a misspelt policy field.
package suggest

import "strings"

// Nearest returns the candidate nearest to name, or "" when none is near:
// one that differs only in case, one that name is the start of, or one
// within two edits (one for names of up to three bytes). Ties go to the
// candidate that sorts first.
func Nearest(name string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if c == name {
			continue
		}
		d := Distance(name, c)
		switch {
		case strings.EqualFold(c, name):
			d = 0
		case strings.HasPrefix(c, name) && d > 2:
			d = 2 // a prefix beats a distant name, not a near one
		case len(name) <= 3 && d > 1:
			continue
		}
		if d < bestDist || d == bestDist && c < best {
			best, bestDist = c, d
		}
	}
	return best
}

// Distance is the Levenshtein distance of a and b, in bytes.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
