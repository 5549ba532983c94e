package token

import "errors"

// Reason is a stable, low-cardinality code for why a token was rejected.
// Reasons feed metrics labels and log fields; they never contain token data.
type Reason string

// The reasons Verify reports. ReasonKeysUnavailable is a server-side outage
// (the keys could not be had; HTTP 503); every other reason is the token's
// fault (HTTP 401).
const (
	ReasonMissing         Reason = "missing"
	ReasonMalformed       Reason = "malformed"
	ReasonTooLarge        Reason = "too_large"
	ReasonAlgNotAllowed   Reason = "alg_not_allowed"
	ReasonUnknownKid      Reason = "unknown_kid"
	ReasonBadSignature    Reason = "bad_signature"
	ReasonExpired         Reason = "expired"
	ReasonNotYetValid     Reason = "not_yet_valid"
	ReasonBadIssuer       Reason = "bad_issuer"
	ReasonBadAudience     Reason = "bad_audience"
	ReasonUnsupportedCrit Reason = "unsupported_crit"
	ReasonKeysUnavailable Reason = "keys_unavailable"
	ReasonMissingExp      Reason = "missing_exp"
)

// Reasons lists every Reason, for pre-registering metric label values.
func Reasons() []Reason {
	return []Reason{
		ReasonMissing, ReasonMalformed, ReasonTooLarge, ReasonAlgNotAllowed,
		ReasonUnknownKid, ReasonBadSignature, ReasonExpired, ReasonNotYetValid,
		ReasonBadIssuer, ReasonBadAudience, ReasonUnsupportedCrit, ReasonKeysUnavailable,
		ReasonMissingExp,
	}
}

// descriptions are the fixed texts of Description.
var descriptions = map[Reason]string{
	ReasonMissing:         "no token",
	ReasonMalformed:       "malformed token",
	ReasonTooLarge:        "token too large",
	ReasonAlgNotAllowed:   "algorithm not allowed",
	ReasonUnknownKid:      "unknown key id",
	ReasonBadSignature:    "bad signature",
	ReasonExpired:         "token expired",
	ReasonNotYetValid:     "token not yet valid",
	ReasonBadIssuer:       "wrong issuer",
	ReasonBadAudience:     "wrong audience",
	ReasonUnsupportedCrit: "unsupported critical header",
	ReasonKeysUnavailable: "verification keys unavailable",
	ReasonMissingExp:      "token has no expiry",
}

// Description returns a short, fixed description of the reason's class
// ("token expired", "bad signature", ...), fit for an RFC 6750
// error_description: printable ASCII without quotes or backslashes, and
// never token content. Unknown reasons describe themselves as malformed.
func (r Reason) Description() string {
	if d, ok := descriptions[r]; ok {
		return d
	}
	return descriptions[ReasonMalformed]
}

// A ReasonError is an error that says why a token was refused (a
// *jwt.Error is one).
type ReasonError interface {
	error
	TokenReason() Reason
}

// SubjectOf returns the "sub" of the authentic token that err (or an error
// it wraps) refused, or "" when there is none (its signature did not
// verify, or it was never checked).
func SubjectOf(err error) string {
	var se interface{ TokenSubject() string }
	if errors.As(err, &se) {
		return se.TokenSubject()
	}
	return ""
}

// ReasonOf returns the Reason that err (or an error it wraps) carries, or
// "" when none does.
func ReasonOf(err error) Reason {
	var re ReasonError
	if errors.As(err, &re) {
		return re.TokenReason()
	}
	return ""
}
