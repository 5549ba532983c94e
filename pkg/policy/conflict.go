package policy

// A Conflict is a pair of policies that would both govern some request with
// equal specificity: the same host matcher (or both any host) and the same
// pathPrefix. The newer one is not served.
type Conflict struct {
	Newer, Older *Policy
	// Host is the shared host matcher, or "*" for any host.
	Host string
}

// FindConflicts returns the conflicts among policies, given oldest first.
// A policy that conflicts is reported once, against the oldest policy it
// ties with, and takes no part in later comparisons.
func FindConflicts(policies []*Policy) []Conflict {
	var out []Conflict
	var kept []*Policy
	for _, p := range policies {
		if c, ok := firstTie(p, kept); ok {
			out = append(out, c)
			continue
		}
		kept = append(kept, p)
	}
	return out
}

func firstTie(p *Policy, older []*Policy) (Conflict, bool) {
	for _, o := range older {
		if o.PathPrefix != p.PathPrefix {
			continue
		}
		if len(o.Hosts) == 0 && len(p.Hosts) == 0 {
			return Conflict{Newer: p, Older: o, Host: "*"}, true
		}
		for _, h := range p.Hosts {
			for _, oh := range o.Hosts {
				if h == oh {
					return Conflict{Newer: p, Older: o, Host: h.String()}, true
				}
			}
		}
	}
	return Conflict{}, false
}
