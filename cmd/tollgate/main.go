// Command tollgate is an Envoy external-authorization service: it verifies
// JWTs, enforces user isolation and per-user quotas declared in AuthPolicy
// resources.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode reports err on stderr, every line prefixed "tollgate: ", and
// returns the process exit code: the code an exitError carries, 2 (usage)
// for any other error.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	code := 2
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if msg := err.Error(); msg != "" {
		for line := range strings.SplitSeq(msg, "\n") {
			fmt.Fprintln(stderr, "tollgate:", line)
		}
	}
	return code
}
