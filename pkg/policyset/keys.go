package policyset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/policy"
)

// secretCheckTimeout bounds the synchronous first look at a Secret (the
// resolver is local and cheap by contract).
const secretCheckTimeout = 100 * time.Millisecond

// keyWaitTimeout bounds one wait for a remote key set; a fetch times out
// sooner.
const keyWaitTimeout = 30 * time.Second

type keyState uint8

const (
	keysPending keyState = iota // not known yet: a first fetch is under way
	keysAvailable
	keysFailed
)

// A keySource is the availability of one key source (an inline JWKS, a
// Secret, a JWKS URI or an issuer's discovery document), shared by every
// version that uses it.
type keySource struct {
	id       string
	secret   bool
	verifier *jwt.Verifier // any verifier of the source, for WaitKeys
	state    keyState
	err      error // why keys are unavailable, when keysFailed
	versions map[*version]struct{}
	cancel   context.CancelFunc // stops the watcher, if one runs
}

func (k *keySource) reason() string {
	if k.secret {
		return v1alpha1.ReasonSecretNotFound
	}
	return v1alpha1.ReasonJWKSUnavailable
}

// keysReady reports whether v verifies with keys at hand.
func keysReady(v *version) bool { return v.src == nil || v.src.state == keysAvailable }

// sourceID identifies the key source of a configuration.
func sourceID(c *jwt.Config) string {
	switch {
	case c.InlineJWKS != "":
		return "inline\x00" + c.InlineJWKS
	case c.Secret != nil:
		return "secret\x00" + c.Secret.String()
	case c.JWKSURI != "":
		return "jwks\x00" + c.JWKSURI
	default:
		return "discovery\x00" + c.Issuer
	}
}

// A sharedVerifier is the verifier of equal jwt settings, with the number
// of versions using it.
type sharedVerifier struct {
	v    *jwt.Verifier
	cfg  jwt.Config
	refs int
}

// configKey identifies jwt settings: equal keys verify the same tokens
// and keep the same claims. It is the JSON form of every field, so that a
// field added to jwt.Config can never be left out.
func configKey(c *jwt.Config) string {
	js, err := json.Marshal(c)
	if err != nil {
		// Not expected of plain data; a unique key only costs sharing.
		return fmt.Sprintf("unshared:%p", c)
	}
	return string(js)
}

// A KeyError is a policy's key configuration error: its jwt settings
// compiled, but no verifier could be made of them (an inline JWKS that
// does not parse, for one). Field is the field path the error is about.
type KeyError struct {
	Field string
	Err   error
}

func (e *KeyError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *KeyError) Unwrap() error { return e.Err }

// newVersionLocked makes the version of it compiled as p, with its token
// verifier and key source.
func (s *Set) newVersionLocked(it *item, p *policy.Policy) (*version, error) {
	v := newVersion(it, p)
	if p.JWT == nil {
		return v, nil
	}
	if s.opts.Keys == nil {
		return nil, errors.New("spec.jwt: no key manager is configured")
	}
	// Policies with the same jwt settings share one verifier: 10,000
	// policies of one identity provider cost one.
	key := configKey(&p.JWT.Config)
	sv := s.verifiers[key]
	if sv == nil {
		ver, err := s.opts.Keys.Verifier(p.JWT.Config)
		if err != nil {
			return nil, &KeyError{Field: "spec.jwt", Err: err}
		}
		sv = &sharedVerifier{v: ver, cfg: p.JWT.Config}
		s.verifiers[key] = sv
	}
	sv.refs++
	v.verifier, v.verifierKey = sv.v, key
	ver := sv.v
	v.src = s.sourceLocked(&p.JWT.Config, ver)
	v.src.versions[v] = struct{}{}
	return v, nil
}

// releaseLocked drops a version no longer held, and its key source when no
// other version uses it.
func (s *Set) releaseLocked(v *version) {
	if v.src == nil {
		return
	}
	// Keys.Retain costs a pass over every policy: call it when some jwt
	// settings are no longer used, not for every edit of a rule.
	if sv := s.verifiers[v.verifierKey]; sv != nil {
		if sv.refs--; sv.refs == 0 {
			delete(s.verifiers, v.verifierKey)
			s.pub.retain = true
		}
	}
	delete(v.src.versions, v)
	if len(v.src.versions) > 0 {
		return
	}
	if v.src.cancel != nil {
		v.src.cancel()
	}
	delete(s.sources, v.src.id)
}

// sourceLocked returns the key source of c, started if new: an inline JWKS
// has its keys at once (Keys.Verifier parsed it); a Secret is looked at
// now; a remote key set is pending until its first fetch. A watcher
// follows a Secret for as long as it is used (a deleted Secret is
// revoked), and a remote key set until it is available.
func (s *Set) sourceLocked(c *jwt.Config, ver *jwt.Verifier) *keySource {
	id := sourceID(c)
	if k := s.sources[id]; k != nil {
		return k
	}
	k := &keySource{id: id, secret: c.Secret != nil, verifier: ver, versions: make(map[*version]struct{})}
	s.sources[id] = k
	switch {
	case c.InlineJWKS != "":
		k.state = keysAvailable
		return k
	case c.Secret != nil:
		ctx, cancel := context.WithTimeout(s.ctx, secretCheckTimeout)
		err := ver.WaitKeys(ctx)
		cancel()
		k.state, k.err = keysAvailable, nil
		if err != nil {
			k.state, k.err = keysFailed, err
		}
	}
	if s.pub.closed {
		return k
	}
	ctx, cancel := context.WithCancel(s.ctx)
	k.cancel = cancel
	s.wg.Add(1)
	go s.watchKeys(ctx, k)
	return k
}

// watchKeys follows the availability of the keys of k and re-decides its
// policies when it changes: while the keys are unavailable it looks again
// every KeysRetry, and at once when the source says they changed. A
// source that says when its keys change (a Secret, revoked when it is
// deleted) is followed for as long as it is used; one that does not (a
// remote JWKS, whose keys pkg/jwt keeps through outages) until its keys
// are had.
func (s *Set) watchKeys(ctx context.Context, k *keySource) {
	defer s.wg.Done()
	s.mu.Lock()
	wait := k.state == keysFailed
	s.mu.Unlock()
	for {
		// Taken before looking at the keys, so that no change is missed.
		changed := k.verifier.KeysChanged()
		if wait {
			t := time.NewTimer(s.opts.KeysRetry)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case <-changed:
				t.Stop()
			}
		}
		wait = true
		wctx, cancel := context.WithTimeout(ctx, keyWaitTimeout)
		err := k.verifier.WaitKeys(wctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		s.keysChanged(k, err)
		if err == nil {
			if changed == nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
				wait = false
			}
		}
	}
}

// keysChanged records the outcome of a wait for the keys of k.
func (s *Set) keysChanged(k *keySource, err error) {
	s.mu.Lock()
	if s.sources[k.id] != k {
		s.mu.Unlock()
		return
	}
	state := keysAvailable
	if err != nil {
		state = keysFailed
	}
	if state == k.state && (err == nil || k.err != nil && err.Error() == k.err.Error()) {
		s.mu.Unlock()
		return
	}
	k.state, k.err = state, err
	if err != nil {
		s.log.Warn("policy keys unavailable", "source", k.reason(), "error", err)
	}
	for v := range k.versions {
		s.enqueueLocked(v.it)
	}
	s.processLocked()
	s.mu.Unlock()
	s.deliver()
}

// configsLocked returns the jwt settings in use, each once.
func (s *Set) configsLocked() []jwt.Config {
	out := make([]jwt.Config, 0, len(s.verifiers))
	for _, sv := range s.verifiers {
		out = append(out, sv.cfg)
	}
	return out
}
