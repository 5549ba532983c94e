package jwt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SecretResolver supplies HS shared secrets. The returned slice must not be
// modified by either side afterwards. Implementations must be safe for
// concurrent use. Only the Manager's poller calls it, about once a second
// per reference (Options.SecretPollInterval), so that a rotated secret
// revokes cached tokens; requests never wait on it.
//
// An error that wraps ErrSecretNotFound (or fs.ErrNotExist) says that the
// secret does not exist: a secret that was deleted is revoked, and its
// policies' tokens no longer verify (keys unavailable) until it is back.
// Any other error keeps the value last read.
type SecretResolver interface {
	Secret(ctx context.Context, ref SecretRef) ([]byte, error)
}

// ErrSecretNotFound is what a SecretResolver's error wraps when the secret
// does not exist.
var ErrSecretNotFound = errors.New("secret not found")

// maxSecretBytes caps a secret file.
const maxSecretBytes = 64 << 10

// dirRecheck is how often DirSecrets stats a file it has already read:
// less than the Manager's poll interval (1 s), so that every poll looks at
// the file and a rotated or removed file takes effect at the next poll.
const dirRecheck = 500 * time.Millisecond

// DirSecrets is a SecretResolver reading the layout of mounted Kubernetes
// Secrets: SecretRef{Namespace: NS, Name: NAME, Key: KEY} is the file
// DIR/NS/NAME/KEY. A file is re-read when its size or modification time
// changes, checked at most twice per second per reference (symlink swaps
// of a mounted Secret's ..data directory are followed). A file that does
// not exist is an error wrapping fs.ErrNotExist: the secret is gone.
type DirSecrets struct {
	dir string
	now func() time.Time

	mu    sync.Mutex // mu guards files
	files map[SecretRef]*secretFile
}

type secretFile struct {
	data      []byte
	size      int64
	modTime   time.Time
	checkedAt time.Time
}

var _ SecretResolver = (*DirSecrets)(nil)

// NewDirSecrets returns a DirSecrets rooted at dir. now may be nil
// (time.Now); it only paces re-checks.
func NewDirSecrets(dir string, now func() time.Time) *DirSecrets {
	if now == nil {
		now = time.Now
	}
	return &DirSecrets{dir: dir, now: now, files: make(map[SecretRef]*secretFile)}
}

// Secret implements SecretResolver. Reference parts must be single path
// elements, so a reference can never name a file outside the directory.
func (d *DirSecrets) Secret(_ context.Context, ref SecretRef) ([]byte, error) {
	for _, part := range []string{ref.Namespace, ref.Name, ref.Key} {
		if part == "" || part == "." || part == ".." || strings.ContainsAny(part, `/\`+"\x00") {
			return nil, fmt.Errorf("secret %s: invalid reference", ref)
		}
	}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.files[ref]
	if f != nil && now.Sub(f.checkedAt) < dirRecheck && now.Sub(f.checkedAt) >= 0 {
		return f.data, nil
	}
	path := filepath.Join(d.dir, ref.Namespace, ref.Name, ref.Key)
	st, err := os.Stat(path)
	if err != nil {
		delete(d.files, ref)
		return nil, fmt.Errorf("secret %s: %w", ref, err)
	}
	if f != nil && st.Size() == f.size && st.ModTime().Equal(f.modTime) {
		f.checkedAt = now
		return f.data, nil
	}
	data, err := readCapped(path)
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", ref, err)
	}
	d.files[ref] = &secretFile{data: data, size: st.Size(), modTime: st.ModTime(), checkedAt: now}
	return data, nil
}

func readCapped(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxSecretBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(data) > maxSecretBytes {
		return nil, errors.New("file larger than 64 KiB")
	}
	return data, nil
}

// secretSource is an HS secret shared by every Verifier that references
// it. Each distinct secret value gets its own *key, so cached tokens of a
// rotated-out secret are revoked with it.
//
// Once a first resolution has finished, only the poller asks the resolver:
// the request path reads the published key set atomically, without a lock
// or a file system call.
type secretSource struct {
	m     *Manager
	ref   SecretRef
	cur   atomic.Pointer[keySet] // one HMAC key, kid ignored; nil until resolved
	err   atomic.Pointer[error]  // the last resolution's error, nil after a success
	ready chan struct{}          // closed once the first resolution finished
	once  sync.Once              // closes ready
	// firstMu serialises first, so that one goroutine resolves first.
	firstMu sync.Mutex

	mu      sync.Mutex // mu serialises resolve and guards the fields below
	lastErr string     // last logged error, to log changes only
	// changedCh is closed, and replaced, when the key comes or goes or
	// changes (see changed).
	changedCh chan struct{}
}

func newSecretSource(m *Manager, ref SecretRef) *secretSource {
	return &secretSource{m: m, ref: ref, ready: make(chan struct{}), changedCh: make(chan struct{})}
}

// changed returns a channel closed the next time the secret's key comes,
// goes or changes, or its error changes.
func (s *secretSource) changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changedCh
}

// notifyLocked closes the channel changed returned. s.mu must be held.
func (s *secretSource) notifyLocked() {
	close(s.changedCh)
	s.changedCh = make(chan struct{})
}

// poll resolves the secret (unless a caller already did) and then
// re-resolves it periodically until ctx ends.
func (s *secretSource) poll(ctx context.Context) {
	defer s.once.Do(func() { close(s.ready) })
	s.first(ctx)
	t := time.NewTicker(s.m.secretPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.resolve(ctx)
	}
}

// first runs the first resolution, once, on whichever goroutine needs it
// first (the poller, or a caller that must not wait for the poller to be
// scheduled, such as a new policy's status check); the others wait for it.
func (s *secretSource) first(ctx context.Context) {
	s.firstMu.Lock()
	defer s.firstMu.Unlock()
	select {
	case <-s.ready:
		return
	default:
	}
	s.resolve(ctx)
	s.once.Do(func() { close(s.ready) })
}

// keys returns the secret's key set as the poller last published it. A
// secret that could not be resolved yet is an error saying why.
func (s *secretSource) keys(ctx context.Context) (*keySet, error) {
	if set := s.cur.Load(); set != nil {
		return set, nil
	}
	select {
	case <-s.ready:
	default:
		s.first(ctx)
	}
	if set := s.cur.Load(); set != nil {
		return set, nil
	}
	if err := s.err.Load(); err != nil {
		return nil, *err
	}
	return nil, fmt.Errorf("secret %s: not resolved", s.ref)
}

func (s *secretSource) refreshUnknown(ctx context.Context) (*keySet, error) {
	return s.keys(ctx)
}

// resolve asks the resolver for the secret and publishes a new key when the
// value changed. A secret that does not exist any more is revoked: its key
// is dropped, and tokens it verified (cached ones too) no longer verify.
// Any other failure keeps the previous value.
func (s *secretSource) resolve(ctx context.Context) {
	data, err := s.m.secrets.Secret(ctx, s.ref)
	if err == nil && len(data) < minSecretLen {
		err = fmt.Errorf("secret %s: shorter than %d bytes", s.ref, minSecretLen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failLocked(err)
		return
	}
	old := s.cur.Load()
	same := old != nil && bytes.Equal(old.all[0].raw.([]byte), data)
	if !same {
		set := newKeySet([]*key{{family: famHMAC, raw: bytes.Clone(data)}})
		set.anyKid = true
		s.cur.Store(set)
	}
	// The key is published before the error is cleared: keys never sees
	// neither (which it would report as "not resolved").
	s.err.Store(nil)
	if s.lastErr != "" {
		s.lastErr = ""
		s.notifyLocked()
	}
	if same {
		return
	}
	s.notifyLocked()
	if old != nil {
		old.all[0].revoked.Store(true)
		s.m.keysRevoked()
		s.m.log.Info("jwt: secret rotated", "secret", s.ref.String())
	}
}

// failLocked records a failed resolution: a secret that does not exist is
// revoked, any other failure keeps the previous value. s.mu must be held.
func (s *secretSource) failLocked(err error) {
	s.err.Store(&err)
	gone := errors.Is(err, ErrSecretNotFound) || errors.Is(err, fs.ErrNotExist)
	if gone {
		if old := s.cur.Swap(nil); old != nil {
			old.all[0].revoked.Store(true)
			s.m.keysRevoked()
			s.m.log.Warn("jwt: secret removed; tokens signed with it no longer verify", "secret", s.ref.String(), "error", err)
			s.lastErr = err.Error()
			s.notifyLocked()
			return
		}
	}
	if msg := err.Error(); msg != s.lastErr {
		s.lastErr = msg
		s.notifyLocked()
		if gone || s.cur.Load() == nil {
			s.m.log.Warn("jwt: secret unavailable", "secret", s.ref.String(), "error", err)
		} else {
			s.m.log.Warn("jwt: secret unavailable; keeping previous value", "secret", s.ref.String(), "error", err)
		}
	}
}
