package policy

import (
	"strconv"
	"strings"
	"time"
)

// A Rate is how one limit (or one tier of it) counts: at most Burst
// requests at once, refilled smoothly at Requests per Period, one every
// Interval. A full counter allows Burst requests together, so a fresh key
// may see up to Burst + Requests requests in its first Period.
type Rate struct {
	Requests int64
	// Burst is >= 1; the compiler sets it to Requests when the policy
	// leaves it unset.
	Burst  int64
	Period time.Duration

	// LimitText is Requests in decimal (X-RateLimit-Limit), NameText the
	// limit's name as a structured-field String ("per-user") and
	// PolicyText the limit's RateLimit-Policy item; all built once by
	// NewRate so that answers do not format them.
	LimitText  string
	NameText   string
	PolicyText string
	// Summary says the rate in words: "100 requests per 15m, burst 100".
	Summary string
}

// NewRate returns the Rate of the limit named name, with its texts.
func NewRate(name string, requests, burst int64, period time.Duration) Rate {
	r := Rate{Requests: requests, Burst: burst, Period: period}
	r.LimitText = strconv.FormatInt(requests, 10)
	r.NameText = string(AppendSFString(nil, name))
	r.PolicyText = PolicyItem(name, requests, period)
	r.Summary = r.LimitText + plural(requests, " request", " requests") + " per " + FormatDuration(period) + ", burst " + strconv.FormatInt(burst, 10)
	return r
}

// Interval is the time in which one request refills: Period / Requests.
func (r *Rate) Interval() time.Duration {
	if r.Requests < 1 {
		return r.Period
	}
	return r.Period / time.Duration(r.Requests)
}

// Explain says what the rate allows, in the words of SPEC: "at most 100
// at once, then one every 9s, so up to 200 in the first 15m".
func (r *Rate) Explain() string {
	return "at most " + strconv.FormatInt(r.Burst, 10) + " at once, then one every " + FormatDuration(r.Interval()) +
		", so up to " + strconv.FormatInt(r.Burst+r.Requests, 10) + " in the first " + FormatDuration(r.Period)
}

// PolicyItem returns the RateLimit-Policy list member of a limit: its name
// as a structured-field String, the quota q (requests) and the window w
// (the period in whole seconds, rounded up), as in
// draft-ietf-httpapi-ratelimit-headers-11 section 3: "per-user";q=100;w=900.
func PolicyItem(name string, requests int64, period time.Duration) string {
	b := AppendSFString(make([]byte, 0, len(name)+32), name)
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, requests, 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, int64((period+time.Second-1)/time.Second), 10)
	return string(b)
}

// AppendSFString appends s as a structured-field String (RFC 9651 section
// 3.3.3): quoted, with '"' and '\' escaped; bytes outside printable ASCII,
// which a String cannot hold, become '?'. Limit names are [-_.a-zA-Z0-9],
// which need neither.
func AppendSFString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := range len(s) {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20 || c > 0x7e:
			dst = append(dst, '?')
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// FormatDuration writes d as a policy would: without zero units ("15m",
// not "15m0s"; "1h30m"; "1.5s"), rounded to the millisecond from one
// second up and to the microsecond below.
func FormatDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		d = d.Round(time.Millisecond)
	case d >= time.Millisecond:
		d = d.Round(time.Microsecond)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
