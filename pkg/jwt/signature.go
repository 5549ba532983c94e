package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"io"
	"math/big"
)

// verifySignature reports whether sig is a valid signature of input by k
// under the canonical algorithm alg, which k accepts. It checks what the
// JWA (RFC 7518) fixes: an HMAC of the hash's full length, RSA PSS with a
// salt as long as the hash, and ECDSA signatures as R||S of exactly twice
// the curve's byte length.
func verifySignature(k *key, alg, input string, sig []byte) bool {
	info := algorithm(alg)
	switch info.Family {
	case famEdDSA:
		pub, ok := k.raw.(ed25519.PublicKey)
		return ok && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, []byte(input), sig)
	case famHMAC:
		secret, ok := k.raw.([]byte)
		if !ok {
			return false
		}
		mac := hmac.New(info.Hash.New, secret)
		_, _ = io.WriteString(mac, input)
		return hmac.Equal(mac.Sum(nil), sig)
	}
	h := info.Hash.New()
	_, _ = io.WriteString(h, input)
	digest := h.Sum(nil)
	switch info.Family {
	case famRSA:
		pub, ok := k.raw.(*rsa.PublicKey)
		if !ok {
			return false
		}
		if info.PSS {
			return rsa.VerifyPSS(pub, info.Hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: info.Hash}) == nil
		}
		return rsa.VerifyPKCS1v15(pub, info.Hash, digest, sig) == nil
	case famEC:
		pub, ok := k.raw.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		size := (pub.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(pub, digest, r, s)
	}
	return false
}
