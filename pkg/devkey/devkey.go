// Package devkey keeps the development signing key behind `tollgate token`
// in a file, so that a developer can mint tokens that a policy verifies
// without running an identity provider.
//
// A key file holds either a private JWK (EdDSA, ES*, RS*, PS*; the JWK's
// "alg" decides the signing algorithm) or, for HS256/384/512, the raw
// shared secret: the exact bytes a policy's secretRef must resolve to.
// Key files are written with mode 0600 in a directory created with mode
// 0700; the public JWKS of an asymmetric key is written next to it, for a
// policy's inline "jwks" or for Handler.
package devkey

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/jwt"
)

// DefaultKeyFile is where `tollgate token` keeps its key unless told
// otherwise, relative to the working directory.
const DefaultKeyFile = ".tollgate/dev-key.json"

// JWKSFileName is the name of the public JWKS file written next to a key
// file.
const JWKSFileName = "dev-jwks.json"

// Errors of this package.
var (
	// ErrExists reports a key file that would be overwritten.
	ErrExists = errors.New("devkey: key file exists")
	// ErrSymmetric reports an operation that needs a public key on an HS
	// secret.
	ErrSymmetric = errors.New("devkey: an HS secret has no public JWKS")
)

// A Key is a signing key read from or written to a key file. It is
// immutable.
type Key struct {
	alg    string // canonical JOSE name
	jwk    []byte // private JWK; nil for an HS secret
	secret []byte // HS secret; nil for a JWK
}

// Generate creates a key for alg: EdDSA (or Ed25519), ES256/384/512,
// RS256/384/512, PS256/384/512, or HS256/384/512 (a random secret of 43
// base64url characters).
func Generate(alg string) (*Key, error) {
	canon, err := jwt.ParseAlgorithm(alg)
	if err != nil {
		return nil, fmt.Errorf("devkey: %w", err)
	}
	if isHMAC(canon) {
		secret, err := jwt.GenerateSecret()
		if err != nil {
			return nil, fmt.Errorf("devkey: %w", err)
		}
		return &Key{alg: canon, secret: secret}, nil
	}
	priv, _, err := jwt.GenerateKey(canon)
	if err != nil {
		return nil, fmt.Errorf("devkey: %w", err)
	}
	return &Key{alg: canon, jwk: priv}, nil
}

// Parse reads the contents of a key file. A JSON object must be a private
// JWK with an "alg"; anything else is an HS256 secret (see WithAlg for
// HS384/512).
func Parse(data []byte) (*Key, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("devkey: empty key file")
	}
	if trimmed[0] != '{' {
		return &Key{alg: "HS256", secret: bytes.Clone(data)}, nil
	}
	var members struct {
		Alg string `json:"alg"`
		D   string `json:"d"`
	}
	if err := json.Unmarshal(trimmed, &members); err != nil {
		return nil, fmt.Errorf("devkey: key file is not a JWK: %w", err)
	}
	if members.D == "" {
		return nil, errors.New("devkey: key file holds no private key")
	}
	canon, err := jwt.ParseAlgorithm(members.Alg)
	if err != nil {
		return nil, fmt.Errorf("devkey: key alg: %w", err)
	}
	if isHMAC(canon) {
		return nil, fmt.Errorf("devkey: %s keys are kept as raw secrets, not JWKs", canon)
	}
	// PublicJWKS parses the whole key, so a damaged file fails here and
	// not when the first token is minted.
	if _, err := jwt.PublicJWKS(trimmed); err != nil {
		return nil, fmt.Errorf("devkey: %w", err)
	}
	return &Key{alg: canon, jwk: bytes.Clone(trimmed)}, nil
}

// Load reads and parses the key file at path. A missing file is reported
// with an error matching fs.ErrNotExist.
func Load(path string) (*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("devkey: %w", err)
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// Ensure loads the key file at path or, when there is none, generates an
// alg key and saves it with its JWKS at JWKSPath(path). created reports
// whether the key was generated.
func Ensure(path, alg string) (k *Key, created bool, err error) {
	k, err = Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	if k, err = Generate(alg); err != nil {
		return nil, false, err
	}
	if err = k.Save(path, JWKSPath(path), false); errors.Is(err, ErrExists) {
		// Another process created it in between: use theirs.
		k, err = Load(path)
		return k, false, err
	}
	if err != nil {
		return nil, false, err
	}
	return k, true, nil
}

// JWKSPath returns the JWKS file that belongs to a key file:
// JWKSFileName in the same directory.
func JWKSPath(keyFile string) string {
	return filepath.Join(filepath.Dir(keyFile), JWKSFileName)
}

// Alg returns the canonical signing algorithm.
func (k *Key) Alg() string { return k.alg }

// Symmetric reports whether k is an HS secret.
func (k *Key) Symmetric() bool { return k.secret != nil }

// WithAlg returns k for signing with alg. Only an HS secret can change
// algorithm (among HS256/384/512); an asymmetric key signs with its own.
func (k *Key) WithAlg(alg string) (*Key, error) {
	canon, err := jwt.ParseAlgorithm(alg)
	if err != nil {
		return nil, fmt.Errorf("devkey: %w", err)
	}
	switch {
	case canon == k.alg:
		return k, nil
	case k.Symmetric() && isHMAC(canon):
		return &Key{alg: canon, secret: k.secret}, nil
	default:
		return nil, fmt.Errorf("devkey: the key signs with %s, not %s", k.alg, canon)
	}
}

// PublicJWKS returns the public JWKS document of an asymmetric key, or
// ErrSymmetric.
func (k *Key) PublicJWKS() ([]byte, error) {
	if k.Symmetric() {
		return nil, ErrSymmetric
	}
	b, err := jwt.PublicJWKS(k.jwk)
	if err != nil {
		return nil, fmt.Errorf("devkey: %w", err)
	}
	return b, nil
}

// Mint signs claims. Unless claims set them, "iat" is now and "exp" is
// now+ttl (no "exp" when ttl <= 0).
func (k *Key) Mint(claims map[string]any, ttl time.Duration) (string, error) {
	var (
		tok string
		err error
	)
	if k.Symmetric() {
		tok, err = jwt.MintWithSecret(k.secret, k.alg, claims, ttl)
	} else {
		tok, err = jwt.Mint(k.jwk, claims, ttl)
	}
	if err != nil {
		return "", fmt.Errorf("devkey: %w", err)
	}
	return tok, nil
}

// Save writes the key to keyFile (mode 0600; missing directories are
// created with mode 0700) and, for an asymmetric key, its public JWKS to
// jwksFile (mode 0644). An existing key file is replaced only with force,
// else ErrExists is returned; the JWKS, being derived, is always replaced.
// Replacements are atomic renames.
func (k *Key) Save(keyFile, jwksFile string, force bool) error {
	var jwks []byte
	if !k.Symmetric() {
		var err error
		if jwks, err = k.PublicJWKS(); err != nil {
			return err
		}
	}
	data := k.secret
	if !k.Symmetric() {
		data = append(bytes.Clone(k.jwk), '\n')
	}
	if err := writeFile(keyFile, data, 0o600, 0o700, force); err != nil {
		return err
	}
	if jwks == nil {
		return nil
	}
	return writeFile(jwksFile, append(jwks, '\n'), 0o644, 0o700, true)
}

// writeFile writes data to path with perm, creating missing parent
// directories with dirPerm. Without replace it fails with ErrExists when
// path exists; with replace it writes a temporary file and renames it over
// path, so a reader never sees half a key.
func writeFile(path string, data []byte, perm, dirPerm fs.FileMode, replace bool) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return fmt.Errorf("devkey: %w", err)
	}
	if !replace {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("devkey: %w", err)
		}
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(path)
			return fmt.Errorf("devkey: write %s: %w", path, err)
		}
		return nil
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("devkey: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("devkey: write %s: %w", path, err)
	}
	return nil
}

func isHMAC(canon string) bool { return strings.HasPrefix(canon, "HS") }
