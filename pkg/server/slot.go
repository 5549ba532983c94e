package server

import (
	"context"
	"time"
)

// A slot is a gRPC stream's place under the in-flight limit. It is the
// context admitStream gives the stream, so that the stream's handler finds
// it without another allocation.
//
// An admitted slot is given back exactly once, by whichever takes it off
// the admission's unclaimed list: the Check handler, which claims it as it
// starts and ends it as it returns, or the reaper, which ends it once its
// stream has ended without a handler having claimed it (grpc-go answers
// some streams itself after the tap admitted them: a deadline already
// past, a method that does not exist, an unknown grpc-encoding; and other
// methods than Check never claim theirs).
type slot struct {
	context.Context
	a  *admission
	sh *share
	// refused is set when the stream has no place: the Check handler
	// refuses it (admitStream says why not the tap). A refused slot is
	// never listed.
	refused bool
	// cancel, when set, ends the deadline admitStream put on the stream.
	cancel context.CancelFunc
	// read is set by the handler that claimed the slot once the stream's
	// message has been read and decoded.
	read bool
	// prev and next link the slot into a.unclaimed while listed is set.
	// a.mu guards all three.
	prev, next *slot
	listed     bool
}

// Value returns the slot itself for slotKey.
func (sl *slot) Value(key any) any {
	if key == (slotKey{}) {
		return sl
	}
	return sl.Context.Value(key)
}

type slotKey struct{}

const (
	// abortedHold is how long a stream that ended before its message was
	// read keeps its place.
	abortedHold = time.Second
	// reapInterval is how often the reaper looks for unclaimed slots of
	// streams that ended, while there are unclaimed slots: such a stream
	// keeps its place at most this much longer than abortedHold.
	reapInterval = abortedHold / 4
)

// end gives the slot up as its stream ends. A stream that ended before
// its message was read (too large, reset, out of time, not a
// CheckRequest, never handled) keeps it for a.hold: what its client sent
// ahead stays buffered in the transport until the stream's last frame is
// written, and whoever floods such streams gets no more of them than the
// limit allows per abortedHold, each refused before it costs anything.
func (sl *slot) end() {
	if sl.cancel != nil {
		sl.cancel()
	}
	if sl.read {
		sl.a.release(sl.sh)
		return
	}
	time.AfterFunc(sl.a.hold, func() { sl.a.release(sl.sh) })
}

// register lists sl as unclaimed, and arms the reaper unless it is due
// already: under load the reaper runs once per reapEvery, and not at all
// once no slot is left unclaimed.
func (a *admission) register(sl *slot) {
	a.mu.Lock()
	sl.next = a.unclaimed
	if sl.next != nil {
		sl.next.prev = sl
	}
	a.unclaimed = sl
	sl.listed = true
	if !a.armed {
		a.armed = true
		if a.reaper == nil {
			a.reaper = time.AfterFunc(a.reapEvery, a.reap)
		} else {
			a.reaper.Reset(a.reapEvery)
		}
	}
	a.mu.Unlock()
}

// claim takes sl off the unclaimed list for its handler, which must then
// end it. It reports false when the reaper has taken it already: the
// stream has ended, and its place is not the handler's to give back.
func (a *admission) claim(sl *slot) bool {
	a.mu.Lock()
	listed := sl.listed
	if listed {
		a.unlistLocked(sl)
	}
	a.mu.Unlock()
	return listed
}

// reap ends the unclaimed slots whose stream has ended, and re-arms
// itself while any are left. Its work is the unclaimed list: the few
// streams between the tap and their handler, those of other methods, and
// those aborted before their handler ran.
func (a *admission) reap() {
	var ended []*slot
	a.mu.Lock()
	for sl := a.unclaimed; sl != nil; {
		next := sl.next
		if sl.Context.Err() != nil {
			a.unlistLocked(sl)
			ended = append(ended, sl)
		}
		sl = next
	}
	if a.unclaimed != nil {
		a.reaper.Reset(a.reapEvery)
	} else {
		a.armed = false
	}
	a.mu.Unlock()
	// No lock is held across end on purpose: it cancels contexts, and
	// the tap registers slots with grpc-go's transport lock held.
	for _, sl := range ended {
		sl.end()
	}
}

// unlistLocked takes sl off a.unclaimed; a.mu must be held.
func (a *admission) unlistLocked(sl *slot) {
	if sl.prev != nil {
		sl.prev.next = sl.next
	} else {
		a.unclaimed = sl.next
	}
	if sl.next != nil {
		sl.next.prev = sl.prev
	}
	sl.prev, sl.next, sl.listed = nil, nil, false
}
