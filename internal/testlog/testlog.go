// Package testlog provides a log sink for tests that read what servers and
// background goroutines logged.
package testlog

import (
	"bytes"
	"sync"
)

// A Buffer collects writes from any goroutine.
type Buffer struct {
	mu  sync.Mutex // mu guards buf
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
