// Package testclock provides a clock for tests that moves only when told
// to; inject its Now where code takes a `now func() time.Time`.
package testclock

import (
	"sync"
	"time"
)

// A Clock is a fake clock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex // mu guards t
	t  time.Time
}

// New returns a Clock reading start.
func New(start time.Time) *Clock { return &Clock{t: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
