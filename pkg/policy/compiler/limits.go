package compiler

import (
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/policy"
)

// limits compiles a list of limits; reserved holds names that the list may
// not reuse (the policy's limits, for a rule's list).
func (c *compiler) limits(in []v1alpha1.Limit, fp *field.Path, policyKey, rule string, reserved map[string]bool, anonymous bool) []policy.Limit {
	out := make([]policy.Limit, 0, len(in))
	local := map[string]bool{}
	for i := range in {
		l := &in[i]
		lp := fp.Index(i)
		if !namePattern.MatchString(l.Name) || len(l.Name) > 63 {
			c.add(field.Invalid(lp.Child("name"), l.Name, "must be 1-63 characters of [-_.a-zA-Z0-9], starting and ending with a letter or digit"))
		}
		if local[l.Name] || reserved[l.Name] {
			c.add(field.Duplicate(lp.Child("name"), l.Name))
		}
		local[l.Name] = true
		cl := policy.Limit{Name: l.Name, Requests: l.Requests}
		c.requests(lp.Child("requests"), l.Requests)
		cl.Period = c.period(lp.Child("period"), l.Period)
		cl.By, cl.ByName = c.by(lp.Child("by"), l.By)
		cl.CounterPrefix = policy.CounterPrefix(policyKey, rule, l.Name, cl.By, cl.ByName)
		if anonymous && cl.By.NeedsIdentity() {
			c.add(field.Invalid(lp.Child("by"), l.By, "an anonymous rule has no token: count it by ip or header"))
		}
		if l.Tiers != nil {
			tp := lp.Child("tiers")
			if anonymous {
				c.add(field.Forbidden(tp, "an anonymous rule has no token to choose a tier from"))
			}
			if l.Tiers.Claim == "" {
				c.add(field.Required(tp.Child("claim"), "claim is required"))
			}
			if len(l.Tiers.Values) == 0 {
				c.add(field.Required(tp.Child("values"), "at least one tier is required"))
			}
			cl.Tiers = &policy.Tiers{Claim: l.Tiers.Claim, Values: make(map[string]policy.Tier, len(l.Tiers.Values))}
			for value, t := range l.Tiers.Values {
				vp := tp.Child("values").Key(value)
				c.requests(vp.Child("requests"), t.Requests)
				tier := policy.Tier{Requests: t.Requests, Period: cl.Period}
				if t.Period != "" {
					tier.Period = c.period(vp.Child("period"), t.Period)
				}
				cl.Tiers.Values[value] = tier
			}
		}
		out = append(out, cl)
	}
	return out
}

func (c *compiler) requests(fp *field.Path, n int64) {
	if n < 1 || n > MaxRequests {
		c.add(field.Invalid(fp, n, "requests must be between 1 and 1000000000"))
	}
}

func (c *compiler) period(fp *field.Path, s string) time.Duration {
	d, ok := c.duration(fp, s)
	if ok && (d < MinPeriod || d > MaxPeriod) {
		c.add(field.Invalid(fp, s, "period must be between 1s and 744h"))
	}
	return d
}

func (c *compiler) duration(fp *field.Path, s string) (time.Duration, bool) {
	if s == "" {
		c.add(field.Required(fp, "a duration such as 30s, 15m or 1h is required"))
		return 0, false
	}
	if !durationPattern.MatchString(s) {
		c.add(field.Invalid(fp, s, "must be a duration such as 30s, 15m or 1h"))
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		c.add(field.Invalid(fp, s, "must be a duration such as 30s, 15m or 1h"))
		return 0, false
	}
	return d, true
}

func (c *compiler) by(fp *field.Path, s string) (policy.KeyKind, string) {
	switch {
	case s == "user":
		return policy.ByUser, ""
	case s == "ip":
		return policy.ByIP, ""
	case s == "user+ip":
		return policy.ByUserIP, ""
	case strings.HasPrefix(s, "claim:") && claimNamePattern.MatchString(s[len("claim:"):]):
		return policy.ByClaim, s[len("claim:"):]
	case strings.HasPrefix(s, "header:") && headerNamePattern.MatchString(s[len("header:"):]):
		return policy.ByHeader, strings.ToLower(s[len("header:"):])
	}
	c.add(field.NotSupported(fp, s, []string{"user", "ip", "user+ip", "claim:<name>", "header:<name>"}))
	return 0, ""
}
