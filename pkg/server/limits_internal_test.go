package server

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestAdmission(t *testing.T) {
	// Each step acquires on one connection (a, b, c) or releases (-a)
	// and says whether the check is admitted.
	type step struct {
		conn  string
		admit bool
	}
	tests := map[string]struct {
		max   int64
		steps []step
	}{
		"one connection takes half of the limit, then is refused": {
			max:   8,
			steps: []step{{"a", true}, {"a", true}, {"a", true}, {"a", true}, {"a", false}},
		},
		"a connection flooding leaves room for others": {
			max: 8,
			steps: []step{{"a", true}, {"a", true}, {"a", true}, {"a", true}, {"a", false},
				{"b", true}, {"b", true}, {"b", false}, {"c", true}, {"d", true}, {"e", false}},
		},
		"the busiest connection stops first": {
			max: 12,
			steps: []step{{"a", true}, {"a", true}, {"a", true}, {"a", true}, {"a", true}, {"a", true},
				{"b", true}, {"b", true}, {"a", false}, {"b", false}, {"c", true}},
		},
		"a release makes room for the connection refused": {
			max:   4,
			steps: []step{{"a", true}, {"a", true}, {"a", false}, {"-a", true}, {"a", true}},
		},
		"the limit holds whatever the connections": {
			max:   2,
			steps: []step{{"a", true}, {"b", true}, {"c", false}, {"-b", true}, {"c", true}},
		},
		"a limit of one admits one check": {
			max:   1,
			steps: []step{{"a", true}, {"b", false}, {"a", false}, {"-a", true}, {"b", true}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := &admission{max: tc.max}
			shares := map[string]*share{"a": {}, "b": {}, "c": {}, "d": {}, "e": {}}
			for i, s := range tc.steps {
				if s.conn[0] == '-' {
					a.release(shares[s.conn[1:]])
					continue
				}
				if got := a.acquire(shares[s.conn]); got != s.admit {
					t.Fatalf("step %d (%s): admitted %v, want %v", i, s.conn, got, s.admit)
				}
			}
			var held int64
			for _, sh := range shares {
				held += sh.inflight.Load()
			}
			if n := a.inflight.Load(); n != held || n > tc.max {
				t.Errorf("in flight %d, connections hold %d, limit %d", n, held, tc.max)
			}
		})
	}
}

func TestBudgetFor(t *testing.T) {
	tests := map[string]struct {
		nofile    uint64
		listeners int
		want      int
	}{
		"a large limit is capped":                   {nofile: 1 << 20, listeners: 2, want: maxConnectionsCeiling},
		"an unlimited limit is capped":              {nofile: ^uint64(0), listeners: 1, want: maxConnectionsCeiling},
		"the reserve comes off before the split":    {nofile: 2048, listeners: 2, want: (2048 - reservedDescriptors) / 2},
		"one listener takes the whole budget":       {nofile: 1200, listeners: 1, want: 1200 - reservedDescriptors},
		"a tiny limit still allows a few":           {nofile: 256, listeners: 2, want: smallListenerConnections},
		"the common 1024 leaves a few hundred each": {nofile: 1024, listeners: 2, want: 384},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := budgetFor(tc.nofile, tc.listeners); got != tc.want {
				t.Errorf("budgetFor(%d, %d) = %d, want %d", tc.nofile, tc.listeners, got, tc.want)
			}
		})
	}
}

// TestLimitListener: at the limit, the oldest connection that has sent
// nothing makes room for a new one; when all have spoken, the new one is
// closed; a closed connection frees its place.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var refusals []string
	l := newLimitListener(inner, 2, func(reason string) { refusals = append(refusals, reason) })
	defer l.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	accept := func() net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("nothing accepted")
			return nil
		}
	}
	// closedByServer reports whether the server closed c: a read ends
	// with EOF rather than waiting.
	closedByServer := func(c net.Conn) bool {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF)
	}
	speak := func(client, server net.Conn) {
		t.Helper()
		if _, err := client.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(server, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}

	silent, talker := dial(), dial()
	_, talkerSrv := accept(), accept()
	speak(talker, talkerSrv)

	// Full: the silent connection is evicted for the new one.
	third := dial()
	thirdSrv := accept()
	if !closedByServer(silent) {
		t.Fatal("the silent connection was not closed to make room")
	}
	speak(third, thirdSrv)
	if n := l.Open(); n != 2 {
		t.Fatalf("open = %d, want 2", n)
	}

	// Full of connections that spoke: the new one is closed.
	if !closedByServer(dial()) {
		t.Fatal("a connection past the limit was not closed")
	}

	// A closed connection frees its place.
	thirdSrv.Close()
	fourth := dial()
	fourthSrv := accept()
	speak(fourth, fourthSrv)
	if n := l.Open(); n != 2 {
		t.Fatalf("open = %d, want 2", n)
	}
	if got, want := refusals, []string{"evicted", "refused"}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("refusals %v, want %v", got, want)
	}
}
