package jwt

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"
)

const testIssuer = "https://issuer.test"

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex // mu guards t
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex // mu guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newTestManager returns a Manager on a fake clock logging at debug level
// into the returned buffer; it is closed with the test.
func newTestManager(t testing.TB, opts Options) (*Manager, *fakeClock, *syncBuffer) {
	t.Helper()
	clock := newFakeClock()
	logs := &syncBuffer{}
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m := NewManager(opts)
	t.Cleanup(m.Close)
	return m, clock, logs
}

func mustVerifier(t testing.TB, m *Manager, cfg Config) *Verifier {
	t.Helper()
	v, err := m.Verifier(cfg)
	if err != nil {
		t.Fatalf("Verifier: %v", err)
	}
	return v
}

// claims returns valid claims for testIssuer at now.
func claims(now time.Time, mods ...func(map[string]any)) map[string]any {
	c := map[string]any{"sub": "user-1", "iss": testIssuer, "aud": "api", "iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix()}
	for _, m := range mods {
		m(c)
	}
	return c
}

func set(k string, v any) func(map[string]any) { return func(c map[string]any) { c[k] = v } }
func del(k string) func(map[string]any)        { return func(c map[string]any) { delete(c, k) } }

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type secretFunc func(ctx context.Context, ref SecretRef) ([]byte, error)

func (f secretFunc) Secret(ctx context.Context, ref SecretRef) ([]byte, error) { return f(ctx, ref) }
