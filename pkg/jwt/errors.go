package jwt

import (
	"errors"

	"github.com/tollgate-dev/tollgate/pkg/token"
)

// Reason is a stable, low-cardinality code for why a token was rejected
// (token.Reason, shared with the decision core).
type Reason = token.Reason

// The reasons Verify reports (see token.Reason).
const (
	ReasonMissing         = token.ReasonMissing
	ReasonMalformed       = token.ReasonMalformed
	ReasonTooLarge        = token.ReasonTooLarge
	ReasonAlgNotAllowed   = token.ReasonAlgNotAllowed
	ReasonUnknownKid      = token.ReasonUnknownKid
	ReasonBadSignature    = token.ReasonBadSignature
	ReasonExpired         = token.ReasonExpired
	ReasonNotYetValid     = token.ReasonNotYetValid
	ReasonBadIssuer       = token.ReasonBadIssuer
	ReasonBadAudience     = token.ReasonBadAudience
	ReasonUnsupportedCrit = token.ReasonUnsupportedCrit
	ReasonKeysUnavailable = token.ReasonKeysUnavailable
	ReasonMissingExp      = token.ReasonMissingExp
)

// Reasons lists every Reason, for pre-registering metric label values.
func Reasons() []Reason { return token.Reasons() }

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
	// Subject is the token's "sub" when its signature verified and only its
	// claims (exp, nbf, iat, iss, aud) did not: for the deny log line.
	Subject string
	Err     error // optional cause, for errors.Is / errors.As
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

// TokenReason returns Reason, for token.ReasonOf.
func (e *Error) TokenReason() Reason { return e.Reason }

// TokenSubject returns Subject, for token.SubjectOf.
func (e *Error) TokenSubject() string { return e.Subject }

var _ token.ReasonError = (*Error)(nil)

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
	ErrInvalidConfig = token.ErrInvalidConfig
	ErrNoKeys        = errors.New("no usable keys")
	// ErrDuplicateKid: a key set where one kid names two keys for the same
	// algorithm is refused.
	ErrDuplicateKid = errors.New("duplicate kid in key set")
	// ErrTooManyKeys: a key set with more than MaxKeys keys is refused.
	ErrTooManyKeys = errors.New("too many keys in key set")
)
