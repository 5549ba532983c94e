package jwt

import (
	"errors"
)

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

// Error is the error type of every failure returned by Verifier.Verify.
//
// Its message is built only from the reason and a fixed description chosen by
// this package, never from the token: the token, its parts and its header
// values (kid, alg, ...) are attacker-controlled and must not reach logs.
// Err, when set, is an underlying cause (for example a JWKS fetch error or a
// context cancellation) and likewise never carries token content.
type Error struct {
	Reason Reason
	Detail string // fixed, human-readable description; never token content
	Err    error  // optional cause, for errors.Is / errors.As
}

// Error implements error.
func (e *Error) Error() string {
	msg := "jwt: " + string(e.Reason)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the Reason carried by err, or "" when err is nil or not
// (wrapping) an *Error.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func fail(r Reason, detail string) *Error { return &Error{Reason: r, Detail: detail} }

func failWrap(r Reason, detail string, err error) *Error {
	return &Error{Reason: r, Detail: detail, Err: err}
}

// Sentinel errors for configuration problems reported by Manager.Verifier
// and, for remote key sets, by Verifier.WaitKeys. Their texts carry no
// package prefix when they are causes inside another error of this package,
// so that a chain says "jwt:" once.
var (
	ErrInvalidConfig = errors.New("jwt: invalid config")
	ErrNoKeys        = errors.New("no usable keys")
	// ErrDuplicateKid: a key set where one kid names two keys for the same
	// algorithm is refused.
	ErrDuplicateKid = errors.New("duplicate kid in key set")
	// ErrTooManyKeys: a key set with more than MaxKeys keys is refused.
	ErrTooManyKeys = errors.New("too many keys in key set")
)
