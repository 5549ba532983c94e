package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/logging"
)

// durationValuer resolves to a duration, as a LogValuer may.
type durationValuer time.Duration

func (d durationValuer) LogValue() slog.Value { return slog.DurationValue(time.Duration(d)) }

func TestNewWritesDurationsAsStrings(t *testing.T) {
	tests := map[string]struct {
		log  func(l *slog.Logger)
		want string
	}{
		"a duration attribute": {
			log:  func(l *slog.Logger) { l.Info("shutting down", "grace", 10*time.Second) },
			want: `"grace":"10s"`,
		},
		"a duration given as any": {
			log:  func(l *slog.Logger) { l.Info("m", slog.Any("cooldown", time.Second)) },
			want: `"cooldown":"1s"`,
		},
		"a duration inside a group": {
			log:  func(l *slog.Logger) { l.Info("m", slog.Group("breaker", "cooldown", 1500*time.Millisecond)) },
			want: `"breaker":{"cooldown":"1.5s"}`,
		},
		"a duration given to With": {
			log:  func(l *slog.Logger) { l.With("refresh", 10*time.Minute).Info("m") },
			want: `"refresh":"10m0s"`,
		},
		"a LogValuer that resolves to a duration": {
			log:  func(l *slog.Logger) { l.Info("m", "took", durationValuer(250*time.Millisecond)) },
			want: `"took":"250ms"`,
		},
		"other kinds are left alone": {
			log:  func(l *slog.Logger) { l.Info("m", "policies", 3, "ready", true) },
			want: `"policies":3,"ready":true`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			l, err := logging.New(&buf, slog.LevelInfo, logging.FormatJSON)
			if err != nil {
				t.Fatal(err)
			}
			tc.log(l)
			if !json.Valid(buf.Bytes()) {
				t.Fatalf("not one JSON object: %s", buf.String())
			}
			if !strings.Contains(buf.String(), tc.want) {
				t.Fatalf("%s\nwant it to contain %s", buf.String(), tc.want)
			}
		})
	}
}

func TestNewText(t *testing.T) {
	var buf bytes.Buffer
	l, err := logging.New(&buf, slog.LevelWarn, logging.FormatText)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("not at warn")
	l.Warn("quota store down", "cooldown", time.Second)
	if got := buf.String(); strings.Contains(got, "not at warn") || !strings.Contains(got, "cooldown=1s") {
		t.Fatalf("text log: %q", got)
	}
	if _, err := logging.New(&buf, slog.LevelInfo, "xml"); err == nil {
		t.Fatal("format xml accepted")
	}
}

// counted counts how often it is formatted.
type counted struct{ n *int }

func (c counted) String() string { *c.n++; return "x" }

func TestPrintf(t *testing.T) {
	var buf bytes.Buffer
	l, err := logging.New(&buf, slog.LevelInfo, logging.FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	formatted := 0
	logging.NewPrintf(l, slog.LevelDebug, "redis: ").Printf(context.Background(), "redis: dial %s", counted{&formatted})
	if buf.Len() != 0 || formatted != 0 {
		t.Fatalf("a line below the level was formatted (%d) or written: %q", formatted, buf.String())
	}
	logging.NewPrintf(l.With("logger", "go-redis"), slog.LevelWarn, "redis: ").
		Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v\n", 1, "refused")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %q", err, buf.String())
	}
	if rec["msg"] != "connection pool: failed to dial after 1 attempts: refused" || rec["level"] != "WARN" || rec["logger"] != "go-redis" {
		t.Fatalf("record %v", rec)
	}
}
