// Command abuse measures how tollgate holds up when callers misbehave, on
// loopback with real processes: a flood of oversized CheckRequests, a flood
// of concurrent streams, requests at the receive limit, and thousands of
// idle raw TCP connections. For each it reports the server's peak RSS, the
// latency a well-behaved client (its own connection, one check at a time)
// sees meanwhile, and what the flood got back. hack/abuse.sh builds
// everything and runs it; docs/operations.md explains the limits measured.
//
// Run it against two binaries to compare a change with what it replaces:
//
//	hack/abuse.sh -tollgate /tmp/tollgate-main
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type config struct {
	tollgate          string
	scenarios         []string
	duration          time.Duration
	probeInterval     time.Duration
	probeNice         int
	floodDeadline     time.Duration
	bigConns, bigC    int
	bigBytes          int
	streamConns       int
	streams           int
	limitConns        int
	limitC            int
	limitBytes        int
	idleConns         int
	heldConns         int
	serverNofile      int
	settle            time.Duration
	serverCPU         string
	clientCPU         string
	serveArgs         []string
	keepWork, verbose bool
}

func main() {
	var c config
	var scenarios, serveArgs string
	flag.StringVar(&c.tollgate, "tollgate", "bin/tollgate", "tollgate binary")
	flag.StringVar(&scenarios, "scenarios", "big,streams,limit,ceiling,idle", "scenarios to run, in order: big, streams, limit, ceiling (limit with held connections), idle")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "length of each flood")
	flag.DurationVar(&c.probeInterval, "probe-interval", 10*time.Millisecond, "pause between the normal client's checks")
	flag.IntVar(&c.probeNice, "probe-nice", -5, "niceness of the normal client's process (nice -n), ahead of the flooding one; 0: unchanged")
	flag.DurationVar(&c.floodDeadline, "flood-deadline", 30*time.Second, "deadline of each flood call (grpc-timeout); 0: none")
	flag.IntVar(&c.bigConns, "big-conns", 8, "big: connections")
	flag.IntVar(&c.bigC, "big-c", 256, "big: concurrent calls")
	flag.IntVar(&c.bigBytes, "big-bytes", 4<<20-1<<10, "big: CheckRequest size in bytes (just under grpc-go's default 4 MiB receive limit)")
	flag.IntVar(&c.streamConns, "stream-conns", 4, "streams: connections")
	flag.IntVar(&c.streams, "streams", 10000, "streams: concurrent calls of a normal size")
	flag.IntVar(&c.limitConns, "limit-conns", 8, "limit: connections")
	flag.IntVar(&c.limitC, "limit-c", 2048, "limit: concurrent calls")
	flag.IntVar(&c.limitBytes, "limit-bytes", 255<<10, "limit: CheckRequest size in bytes (just under the receive limit)")
	flag.IntVar(&c.heldConns, "held-conns", 1000, "ceiling: gRPC and HTTP connections, each, used once and held through the limit flood")
	flag.IntVar(&c.idleConns, "idle-conns", 5000, "idle: raw TCP connections to the gRPC port that never send a byte")
	flag.IntVar(&c.serverNofile, "server-nofile", 4096, "idle: RLIMIT_NOFILE of the server (prlimit), below -idle-conns as in a small container")
	flag.DurationVar(&c.settle, "settle", 15*time.Second, "idle: how long the idle connections are held before counting those the server closed")
	flag.StringVar(&c.serverCPU, "server-cpu", "1", "CPU list for the server (taskset -c); empty: no pinning")
	flag.StringVar(&c.clientCPU, "client-cpu", "0", "CPU list for this process, the clients (taskset -c); empty: no pinning")
	flag.StringVar(&serveArgs, "serve-args", "", "extra arguments for tollgate serve, space-separated")
	flag.BoolVar(&c.keepWork, "keep", false, "keep the work directory (policies, server logs)")
	flag.BoolVar(&c.verbose, "v", false, "print every flood outcome")
	probeAddr := flag.String("probe", "", "run as the normal client's process against this address (internal)")
	probeRequest := flag.String("probe-request", "", "the normal client's encoded CheckRequest (with -probe)")
	flag.Parse()
	if *probeAddr != "" {
		if err := runProbe(*probeAddr, *probeRequest, c.probeInterval); err != nil {
			fmt.Fprintln(os.Stderr, "abuse probe:", err)
			os.Exit(1)
		}
		return
	}
	c.scenarios = strings.Split(scenarios, ",")
	c.serveArgs = strings.Fields(serveArgs)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, &c, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "abuse:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c *config, out io.Writer) error {
	if err := pin(c.clientCPU); err != nil {
		fmt.Fprintln(out, "note: not pinned:", err)
		c.serverCPU = ""
	}
	dir, err := os.MkdirTemp("", "tollgate-abuse-")
	if err != nil {
		return err
	}
	if c.keepWork {
		fmt.Fprintln(out, "work directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	fx, err := generate(dir)
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	fmt.Fprintf(out, "tollgate abuse run: %s; normal CheckRequest %d bytes; server on CPU %q, clients on CPU %q; load average %s\n\n",
		c.tollgate, fx.normalSize, c.serverCPU, c.clientCPU, loadAverage())
	for _, name := range c.scenarios {
		var err error
		switch name {
		case "big":
			err = floodScenario(ctx, c, fx, out, floodSpec{
				title: fmt.Sprintf("big: %d concurrent %.1f MiB CheckRequests over %d connections", c.bigC, float64(c.bigBytes)/(1<<20), c.bigConns),
				conns: c.bigConns, concurrency: c.bigC, size: c.bigBytes,
			})
		case "streams":
			err = floodScenario(ctx, c, fx, out, floodSpec{
				title: fmt.Sprintf("streams: %d concurrent normal CheckRequests over %d connections", c.streams, c.streamConns),
				conns: c.streamConns, concurrency: c.streams,
			})
		case "limit":
			err = floodScenario(ctx, c, fx, out, floodSpec{
				title: fmt.Sprintf("limit: %d concurrent %d KiB CheckRequests over %d connections", c.limitC, c.limitBytes>>10, c.limitConns),
				conns: c.limitConns, concurrency: c.limitC, size: c.limitBytes,
			})
		case "ceiling":
			err = floodScenario(ctx, c, fx, out, floodSpec{
				title: fmt.Sprintf("ceiling: %d gRPC and %d HTTP connections held, and %d concurrent %d KiB CheckRequests over %d more",
					c.heldConns, c.heldConns, c.limitC, c.limitBytes>>10, c.limitConns),
				conns: c.limitConns, concurrency: c.limitC, size: c.limitBytes, held: c.heldConns,
			})
		case "idle":
			err = idleScenario(ctx, c, fx, out)
		default:
			err = fmt.Errorf("unknown scenario %q: want big, streams, limit, ceiling or idle", name)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintln(out, "RSS: VmHWM of the server process (its peak since start); latencies of the normal client's checks: a process of its own, one check at a time on a connection opened before the flood.")
	return nil
}

// pin moves this process (the clients) onto cpus, so that the server,
// pinned elsewhere, measures its own work.
func pin(cpus string) error {
	if cpus == "" {
		return nil
	}
	return taskset(cpus, os.Getpid())
}

// loadAverage returns the 1, 5 and 15 minute load averages: a busy
// machine makes every figure noisier.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b int64) float64        { return float64(b) / (1 << 20) }
