package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// A part is where some of a server's CPU goes: the first part whose match
// accepts a sample's stack (leaf first) gets the sample.
type part struct {
	name  string
	match func(stack []string) bool
}

// anyFrame matches stacks with a frame that contains one of subs.
func anyFrame(subs ...string) func([]string) bool {
	return func(stack []string) bool {
		for _, f := range stack {
			for _, s := range subs {
				if strings.Contains(f, s) {
					return true
				}
			}
		}
		return false
	}
}

// parts splits tollgate's CPU profile so that the memory and Redis stores
// can be compared: the quota store comes first, so a Redis round trip's
// write, read and allocations count there, and the scheduler's part is
// what parking and waking goroutines costs (epoll, idle), which every
// round trip adds.
var parts = []part{
	{"quota store (pkg/ratelimit: Redis round trips)", anyFrame("/pkg/ratelimit.")},
	{"garbage collector", anyFrame("runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge")},
	{"scheduler: park, wait (epoll), wake", anyFrame("runtime.schedule", "runtime.mcall", "runtime.park_m")},
	{"gRPC: read, HTTP/2, decode", anyFrame("grpc.recv", "transport.(*http2Server).HandleStreams")},
	{"gRPC: encode, write", anyFrame("transport.(*loopyWriter)", "grpc.(*Server).sendResponse", "grpc.(*serverStream).SendMsg")},
	{"tollgate: token, policy, decision, response", anyFrame("github.com/tollgate-dev/tollgate/")},
	{"other", func([]string) bool { return true }},
}

// A sample is one stack of a CPU profile and the time spent in it.
type sample struct {
	value time.Duration
	stack []string // leaf first
}

// parseTraces reads the output of go tool pprof -traces: blocks separated
// by "-----------+---..." lines, each starting with the time and the leaf
// function, followed by one caller per line.
func parseTraces(r io.Reader) ([]sample, error) {
	var samples []sample
	var cur *sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "-----------+") {
			cur = nil
			continue
		}
		if len(samples) == 0 && cur == nil && !strings.HasPrefix(line, " ") {
			continue // header: File, Type, Duration...
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if cur == nil {
			if len(fields) < 2 {
				return nil, fmt.Errorf("trace starts without time and function: %q", line)
			}
			v, err := time.ParseDuration(fields[0])
			if err != nil {
				return nil, fmt.Errorf("trace time %q: %w", fields[0], err)
			}
			samples = append(samples, sample{value: v, stack: []string{fields[1]}})
			cur = &samples[len(samples)-1]
			continue
		}
		cur.stack = append(cur.stack, fields[0])
	}
	return samples, sc.Err()
}

// shares returns the share of each of parts in samples' total time.
func shares(samples []sample) []float64 {
	sums := make([]time.Duration, len(parts))
	var total time.Duration
	for _, s := range samples {
		for i, p := range parts {
			if p.match(s.stack) {
				sums[i] += s.value
				break
			}
		}
		total += s.value
	}
	out := make([]float64, len(parts))
	if total == 0 {
		return out
	}
	for i, d := range sums {
		out[i] = float64(d) / float64(total)
	}
	return out
}

// profileShares splits the CPU profile at path into parts, with go tool
// pprof (the profile carries its function names: no binary needed).
func profileShares(ctx context.Context, path string) ([]float64, error) {
	cmd := exec.CommandContext(ctx, "go", "tool", "pprof", "-traces", path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -traces %s: %w: %s", path, err, stderr.String())
	}
	samples, err := parseTraces(strings.NewReader(string(out)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(samples) == 0 {
		return nil, fmt.Errorf("%s: no samples", path)
	}
	return shares(samples), nil
}

// reportParts prints, for each profiled server, its CPU per
// request in the unthrottled phases split as its profile splits (a profile
// covers the last round; the shares are applied to all rounds' CPU per
// request), and redis-server's per decision: the answer to "where does
// the difference between two scenarios go".
func reportParts(ctx context.Context, out io.Writer, results []*result) {
	var profiled []*result
	var split [][]float64
	for _, r := range results {
		if r.profile == "" {
			continue
		}
		s, err := profileShares(ctx, r.profile)
		if err != nil {
			fmt.Fprintf(out, "%s: no split of the CPU: %v\n", r.name, err)
			continue
		}
		profiled = append(profiled, r)
		split = append(split, s)
	}
	if len(profiled) == 0 {
		return
	}
	width := len("redis-server: the rest (read, write, wake)")
	for _, p := range parts {
		width = max(width, len(p.name))
	}
	col := 10
	for _, r := range profiled {
		col = max(col, len(r.name)+1)
	}
	fmt.Fprintln(out, "\nwhere the CPU goes, µs per request, unthrottled (shares of each server's CPU profile of its last round):")
	fmt.Fprintf(out, "  %-*s", width, "")
	for _, r := range profiled {
		fmt.Fprintf(out, "%*s", col, r.name)
	}
	fmt.Fprintln(out)
	row := func(name string, value func(i int, r *result) float64) {
		fmt.Fprintf(out, "  %-*s", width, name)
		for i, r := range profiled {
			fmt.Fprintf(out, "%*.1f", col, value(i, r))
		}
		fmt.Fprintln(out)
	}
	perRequest := func(r *result, d time.Duration) float64 {
		return us(d / time.Duration(max(r.max.requests, 1)))
	}
	for j, p := range parts {
		row(p.name, func(i int, r *result) float64 { return split[i][j] * perRequest(r, r.max.cpu) })
	}
	inRedis := func(r *result) float64 {
		if r.evalCalls == 0 {
			return 0
		}
		return float64(r.evalUsec) / float64(r.max.requests)
	}
	row("redis-server: take.lua", func(_ int, r *result) float64 { return inRedis(r) })
	row("redis-server: the rest (read, write, wake)", func(_ int, r *result) float64 {
		return max(perRequest(r, r.max.redis)-inRedis(r), 0)
	})
	row("total", func(_ int, r *result) float64 { return us(r.max.cpuPerRequest()) })
}
