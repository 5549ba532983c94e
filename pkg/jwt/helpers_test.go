package jwt

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/testclock"
	"github.com/tollgate-dev/tollgate/internal/testlog"
)

const testIssuer = "https://issuer.test"

// fakeClock is an injectable clock.
type fakeClock = testclock.Clock

func newFakeClock() *fakeClock { return testclock.New(time.Unix(1_800_000_000, 0)) }

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = testlog.Buffer

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
