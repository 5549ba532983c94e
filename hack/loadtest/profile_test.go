package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

// traces is go tool pprof -traces output in its shape: a header, then
// blocks of a time, the leaf function and its callers.
const traces = `File: tollgate
Build ID: a5cc645d5d17bf1ce203ed5a4f83a7b4d1176d9b
Type: cpu
Duration: 9s, Total samples = 100ms ( 1.11%)
-----------+-------------------------------------------------------
      40ms   internal/runtime/syscall/linux.Syscall6
             syscall.write
             github.com/tollgate-dev/tollgate/pkg/ratelimit.(*respConn).roundTrip
             github.com/tollgate-dev/tollgate/pkg/decision.(*Engine).charge
             github.com/tollgate-dev/tollgate/pkg/server.check
-----------+-------------------------------------------------------
      30ms   google.golang.org/protobuf/internal/impl.consumeMap
             google.golang.org/grpc.recv
             github.com/tollgate-dev/tollgate/pkg/server.check
-----------+-------------------------------------------------------
      20ms   internal/runtime/syscall/linux.EpollWait
             runtime.netpoll
             runtime.findRunnable
             runtime.schedule
             runtime.park_m
             runtime.mcall
-----------+-------------------------------------------------------
      10ms   runtime.memmove
-----------+-------------------------------------------------------
`

func TestParseTraces(t *testing.T) {
	samples, err := parseTraces(strings.NewReader(traces))
	if err != nil {
		t.Fatal(err)
	}
	wantValues := []time.Duration{40 * time.Millisecond, 30 * time.Millisecond, 20 * time.Millisecond, 10 * time.Millisecond}
	wantDepth := []int{5, 3, 6, 1}
	if len(samples) != len(wantValues) {
		t.Fatalf("got %d samples, want %d", len(samples), len(wantValues))
	}
	for i, s := range samples {
		if s.value != wantValues[i] || len(s.stack) != wantDepth[i] {
			t.Errorf("sample %d: %v with %d frames, want %v with %d", i, s.value, len(s.stack), wantValues[i], wantDepth[i])
		}
	}
	if got := samples[2].stack[0]; got != "internal/runtime/syscall/linux.EpollWait" {
		t.Errorf("leaf of sample 2 = %q", got)
	}
}

func TestParseTracesRejectsBadTime(t *testing.T) {
	bad := "File: x\n-----------+----\n      4parsecs   runtime.memmove\n"
	if _, err := parseTraces(strings.NewReader(bad)); err == nil {
		t.Fatal("no error for a trace time that is not a duration")
	}
}

func TestShares(t *testing.T) {
	samples, err := parseTraces(strings.NewReader(traces))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for i, s := range shares(samples) {
		got[parts[i].name] = s
	}
	want := map[string]float64{
		// the quota store comes before tollgate's own code and the
		// syscall it makes
		"quota store (pkg/ratelimit: Redis round trips)": 0.4,
		"gRPC: read, HTTP/2, decode":                     0.3,
		"scheduler: park, wait (epoll), wake":            0.2,
		"other":                                          0.1,
	}
	for _, p := range parts {
		if math.Abs(got[p.name]-want[p.name]) > 1e-9 {
			t.Errorf("%s: share %.3f, want %.3f", p.name, got[p.name], want[p.name])
		}
	}
}

func TestProfilePath(t *testing.T) {
	for _, tc := range []struct {
		scenarios []string
		scenario  string
		want      string
	}{
		{[]string{"memory"}, "memory", "/tmp/tg.pprof"},
		{[]string{"bare", "memory"}, "memory", "/tmp/tg-memory.pprof"},
		{[]string{"bare", "memory"}, "bare", "/tmp/tg-bare.pprof"},
		{[]string{"bare", "memory", "redis"}, "redis", "/tmp/tg-redis.pprof"},
		{[]string{"memory", "memory:GOGC=400+GOMEMLIMIT=64MiB"}, "memory:GOGC=400+GOMEMLIMIT=64MiB", "/tmp/tg-memory-GOGC400-GOMEMLIMIT64MiB.pprof"},
		{[]string{"redis", "redis@bin/old"}, "redis@bin/old", "/tmp/tg-redis-bin-old.pprof"},
	} {
		c := &config{scenarios: tc.scenarios, cpuProfile: "/tmp/tg.pprof"}
		if got := profilePath(c, tc.scenario); got != tc.want {
			t.Errorf("profilePath(%v, %q) = %q, want %q", tc.scenarios, tc.scenario, got, tc.want)
		}
	}
}
