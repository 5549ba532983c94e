// Package logging builds tollgate's one structured log stream (log/slog)
// and adapts the loggers of the libraries tollgate uses to it, so that
// every line a process writes is one record of the same format.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Formats of New.
const (
	FormatJSON = "json"
	FormatText = "text"
)

// New returns the process's logger: records at level and above, written to
// w as JSON objects or as logfmt-style text. Durations are written as Go
// duration strings ("10s", "250ms") in both formats, never as JSON
// nanoseconds, whoever logs them.
func New(w io.Writer, level slog.Level, format string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationString}
	switch format {
	case FormatJSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case FormatText:
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("logging: format %q: want json or text", format)
}

// durationString is New's ReplaceAttr. Handlers resolve LogValuers before
// calling it, and call it for attributes inside groups and for those given
// to With, so it sees every duration of a record.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// A Printf logs a printf-style library's lines (go-redis's
// redis.SetLogger takes one) as records of one level, with the library's
// own "name: " prefix taken off. The message is formatted only when the
// level is enabled.
type Printf struct {
	log    *slog.Logger
	level  slog.Level
	prefix string
}

// NewPrintf returns a Printf that logs to log at level, dropping prefix
// from the start of each line.
func NewPrintf(log *slog.Logger, level slog.Level, prefix string) *Printf {
	return &Printf{log: log, level: level, prefix: prefix}
}

// Printf logs one line.
func (p *Printf) Printf(ctx context.Context, format string, v ...any) {
	if !p.log.Enabled(ctx, p.level) {
		return
	}
	msg := strings.TrimSpace(strings.TrimPrefix(fmt.Sprintf(format, v...), p.prefix))
	p.log.Log(ctx, p.level, msg)
}
