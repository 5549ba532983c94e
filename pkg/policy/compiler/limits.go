package compiler

import (
	"fmt"
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
		cl := policy.Limit{Name: l.Name}
		c.requests(lp.Child("requests"), l.Requests)
		period := c.period(lp.Child("period"), l.Period)
		burst := l.Requests
		if l.Burst != nil {
			burst = *l.Burst
			c.burst(lp.Child("burst"), burst, l.Requests)
		}
		cl.Rate = policy.NewRate(l.Name, l.Requests, burst, period)
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
			cl.Tiers = &policy.Tiers{Claim: l.Tiers.Claim, Values: make(map[string]*policy.Rate, len(l.Tiers.Values))}
			for value, t := range l.Tiers.Values {
				vp := tp.Child("values").Key(value)
				c.requests(vp.Child("requests"), t.Requests)
				tierPeriod := period
				if t.Period != "" {
					tierPeriod = c.period(vp.Child("period"), t.Period)
				}
				// A tier's burst: its own, else the limit's when the limit
				// sets one, else the tier's requests.
				tierBurst := t.Requests
				switch {
				case t.Burst != nil:
					tierBurst = *t.Burst
					c.burst(vp.Child("burst"), tierBurst, t.Requests)
				case l.Burst != nil:
					tierBurst = *l.Burst
					if t.Requests >= 1 && !burstFits(tierBurst, t.Requests) {
						c.add(field.Invalid(vp.Child("requests"), t.Requests, fmt.Sprintf(
							"this tier takes the limit's burst %d, which must be at most %d times its requests: set the tier's burst", tierBurst, MaxBurstRatio)))
					}
				}
				r := policy.NewRate(l.Name, t.Requests, tierBurst, tierPeriod)
				cl.Tiers.Values[value] = &r
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

// burst checks a limit's or a tier's burst against its requests.
func (c *compiler) burst(fp *field.Path, burst, requests int64) {
	switch {
	case burst < 1 || burst > MaxRequests:
		c.add(field.Invalid(fp, burst, "burst must be between 1 and 1000000000"))
	case requests >= 1 && !burstFits(burst, requests):
		c.add(field.Invalid(fp, burst, fmt.Sprintf("burst must be at most %d times requests (%d)", MaxBurstRatio, requests)))
	}
}

// burstFits reports whether burst is at most MaxBurstRatio times requests.
func burstFits(burst, requests int64) bool { return burst <= MaxBurstRatio*requests }

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
