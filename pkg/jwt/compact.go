package jwt

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"

	"github.com/tollgate-dev/tollgate/pkg/token"
)

// b64url decodes token segments: the URL-safe alphabet, no padding, no
// non-zero trailing bits. It refuses every other byte except CR and LF,
// which Go's decoders skip: validSegment refuses those.
var b64url = base64.RawURLEncoding.Strict()

// validSegment reports whether seg can be a base64url segment as far as
// b64url does not check: a length an unpadded encoding can have, and no
// CR or LF.
func validSegment(seg string) bool {
	return len(seg)%4 != 1 && strings.IndexByte(seg, '\r') < 0 && strings.IndexByte(seg, '\n') < 0
}

// compactJWS is a compact JWS split, checked for shape and with its
// protected header read. Nothing in it is verified yet.
type compactJWS struct {
	input  string   // "header.payload", what the signature covers
	claims []member // the payload's members, checked by scanObject within payloadLimits
	sig    []byte   // decoded
	alg    string   // header "alg" as sent
	kid    string
	hasKid bool
	crit   bool // a non-empty crit array is present
	b64    bool // an RFC 7797 b64 member is present
}

// parseCompact splits raw (exactly two dots, at most MaxTokenSize bytes:
// the caller checked) and runs the cheap structural checks, in order of
// cost: every segment in the base64url alphabet, then the header decoded
// and scanned within headerLimits (nesting, member count, duplicate names,
// UTF-8), then the payload likewise. A token failing any of them is
// ReasonMalformed and costs at most one linear pass over its bytes; no key
// is looked up and no signature is checked.
func parseCompact(raw string) (compactJWS, *Error) {
	var t compactJWS
	h, rest, _ := strings.Cut(raw, ".")
	p, sig, _ := strings.Cut(rest, ".")
	if h == "" || !validSegment(h) || !validSegment(p) || !validSegment(sig) {
		return t, fail(ReasonMalformed, "segment is not base64url")
	}
	t.input = raw[:len(h)+1+len(p)]
	var err error
	if t.sig, err = b64url.DecodeString(sig); err != nil {
		return t, fail(ReasonMalformed, "signature is not base64url")
	}
	hdr, err := b64url.DecodeString(h)
	if err != nil {
		return t, fail(ReasonMalformed, "header is not base64url")
	}
	err = scanObject(hdr, headerLimits, func(name, value []byte) error {
		var ok bool
		switch string(name) {
		case "alg":
			t.alg, ok = token.JSONString(value)
		case "kid":
			t.kid, ok = token.JSONString(value)
			t.hasKid = true
		case "crit":
			// RFC 7515 §4.1.11: a non-empty array of names. Tollgate
			// understands no extension, so any valid crit is refused
			// later as unsupported; anything else is malformed here.
			var names []string
			ok = json.Unmarshal(value, &names) == nil && len(names) > 0
			t.crit = true
		case "b64":
			t.b64, ok = true, true
		default:
			ok = true
		}
		if !ok {
			return errBadHeaderMember
		}
		return nil
	})
	if err != nil {
		return t, failWrap(ReasonMalformed, "header", err)
	}
	payload, err := b64url.DecodeString(p)
	if err != nil {
		return t, fail(ReasonMalformed, "payload is not base64url")
	}
	t.claims = make([]member, 0, 16)
	err = scanObject(payload, payloadLimits, func(name, value []byte) error {
		t.claims = append(t.claims, member{name: name, value: value})
		return nil
	})
	if err != nil {
		return t, failWrap(ReasonMalformed, "claims", err)
	}
	return t, nil
}

// A member is one member of a JSON object: its name (escapes resolved)
// and raw value.
type member struct{ name, value []byte }

var errBadHeaderMember = errors.New("alg, kid or crit of the wrong type")
