package ratelimit

import (
	"time"

	"github.com/tollgate-dev/tollgate/internal/testclock"
)

// fakeClock is a clock that moves only when told to.
type fakeClock = testclock.Clock

func newFakeClock() *fakeClock {
	return testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
}
