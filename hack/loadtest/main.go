// Command loadtest measures what tollgate costs per Envoy Check, next to a
// bare grpc-go ext_authz server, in one run: it generates an ES256 key, a
// policy, one token and one ~1 KB CheckRequest per user, then for each
// server (bare, tollgate with the memory store, tollgate with the Redis
// store) drives ghz against it and reads the servers' CPU time and memory
// from /proc. hack/loadtest.sh builds everything and runs it (make
// loadtest); docs/loadtest.md explains the figures.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tollgate-dev/tollgate/internal/procstat"
)

type config struct {
	tollgate, bare, ghz, redisServer string
	users                            int
	warmup, duration, rateDuration   time.Duration
	concurrency, connections, rate   int
	rounds                           int
	scenarios                        []string
	serverCPU, clientCPU, redisCPU   string
	unpinned                         bool // taskset missing or one CPU
	workDir                          string
	cpuProfile                       string
	serveArgs                        []string
}

func main() {
	var c config
	var scenarios, serveArgs string
	flag.StringVar(&c.tollgate, "tollgate", "bin/tollgate", "tollgate binary")
	flag.StringVar(&c.bare, "bare", "bin/loadtest-bare", "bare ext_authz server binary (hack/loadtest/bare)")
	flag.StringVar(&c.ghz, "ghz", "bin/ghz", "ghz binary")
	flag.StringVar(&c.redisServer, "redis-server", "redis-server", "redis-server binary, for the redis scenario")
	flag.IntVar(&c.users, "users", 1000, "users: one token and one CheckRequest each, rotated")
	flag.DurationVar(&c.warmup, "warmup", 3*time.Second, "unmeasured load before each server's measurements")
	flag.DurationVar(&c.duration, "duration", 5*time.Second, "length of one round's unthrottled phase (CPU per request, throughput)")
	flag.DurationVar(&c.rateDuration, "rate-duration", 5*time.Second, "length of one round's fixed-rate phase (latency)")
	flag.IntVar(&c.concurrency, "concurrency", 50, "ghz concurrency")
	flag.IntVar(&c.connections, "connections", 1, "ghz connections")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds: each measures every server once per phase, in turn")
	flag.IntVar(&c.rate, "rate", 2000, "requests per second of the fixed-rate phase; 0 skips it")
	flag.StringVar(&scenarios, "scenarios", "bare,memory,redis", "servers to measure, in order; a tollgate scenario may add environment variables and another binary: memory:GOGC=200+GOMEMLIMIT=64MiB, redis@bin/tollgate-old; redis/CPUS runs redis-server on those CPUs (redis/0)")
	flag.StringVar(&c.serverCPU, "server-cpu", "1", "CPU list for servers and redis-server (taskset -c); empty: no pinning")
	flag.StringVar(&c.clientCPU, "client-cpu", "0", "CPU list for ghz (taskset -c); empty: no pinning")
	flag.StringVar(&c.redisCPU, "redis-cpu", "server", "CPU list for redis-server (taskset -c): \"server\" puts it on -server-cpu, so that the server measured (tollgate and its Redis) has the same CPU as the others and ghz keeps its own; empty: no pinning. A scenario redis/CPUS overrides it: redis/0 runs redis-server beside ghz")
	flag.StringVar(&c.workDir, "work", "", "directory for keys, policies and requests; default a temporary one, removed after")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of each server during its last unthrottled phase to this file, or with several scenarios to one file each, named after the scenario (FILE.pprof: FILE-bare.pprof, FILE-memory.pprof), and print where each one's CPU goes")
	flag.StringVar(&serveArgs, "serve-args", "", "extra arguments for tollgate serve, space-separated")
	flag.Parse()
	c.scenarios = strings.Split(scenarios, ",")
	c.serveArgs = strings.Fields(serveArgs)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, &c, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c *config, out io.Writer) error {
	if _, err := exec.LookPath("taskset"); err != nil || runtime.NumCPU() < 2 {
		fmt.Fprintln(out, "note: taskset missing or one CPU: servers and ghz are not pinned")
		c.serverCPU, c.clientCPU, c.redisCPU = "", "", ""
		c.unpinned = true
	}
	if c.redisCPU == "server" {
		c.redisCPU = c.serverCPU
	}
	dir := c.workDir
	if dir == "" {
		d, err := os.MkdirTemp("", "tollgate-loadtest-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	fx, err := generate(dir, c.users)
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	fmt.Fprintf(out, "tollgate load test: %d users (ES256 tokens), CheckRequests of %d bytes on average; ghz -c %d --connections %d\n",
		c.users, fx.avgSize, c.concurrency, c.connections)
	fmt.Fprintf(out, "servers on CPU %q, ghz on CPU %q, redis-server on CPU %q; %s; load average %s\n\n",
		c.serverCPU, c.clientCPU, c.redisCPU, runtime.Version(), loadAverage())

	results, err := measureAll(ctx, c, fx, dir)
	if err != nil {
		return err
	}
	report(out, c, results)
	reportParts(ctx, out, results)
	return nil
}

// A result is what one server did in both phases.
type result struct {
	name        string
	max, atRate *phase
	// Redis only: take.lua runs and their time inside Redis, in the
	// unthrottled phase.
	evalCalls, evalUsec int64
	redisReads          int64  // reads of client sockets by redis-server
	profile             string // CPU profile of the last unthrottled phase
}

// A phase is one ghz run against one server, or the sum of several.
type phase struct {
	requests   uint64
	rps        float64
	cpu, redis time.Duration // server process, redis-server
	// ipis counts the machine's inter-processor interrupts (procstat.IPIs)
	// during the phase, ghz's included; -1 when unknown.
	ipis      int64
	p50, p99  time.Duration
	rss, peak int64 // server process, at the end of the phase
	anon      int64 // anonymous part of rss
	errors    uint64
	codes     map[string]uint64 // non-OK gRPC codes and their counts
	// perRequest holds each round's CPU per request, for the spread.
	perRequest []time.Duration
}

// add sums q into p: counts and times add up, rates and latencies are the
// means of the rounds, RSS is the largest.
func (p *phase) add(q *phase) {
	n := float64(len(p.perRequest))
	p.perRequest = append(p.perRequest, q.cpuPerRequest())
	p.requests += q.requests
	p.errors += q.errors
	for code, n := range q.codes {
		if p.codes == nil {
			p.codes = map[string]uint64{}
		}
		p.codes[code] += n
	}
	p.cpu += q.cpu
	p.redis += q.redis
	if p.ipis >= 0 {
		p.ipis += q.ipis
		if q.ipis < 0 {
			p.ipis = -1
		}
	}
	p.rps = (p.rps*n + q.rps) / (n + 1)
	p.p50 = time.Duration((float64(p.p50)*n + float64(q.p50)) / (n + 1))
	p.p99 = time.Duration((float64(p.p99)*n + float64(q.p99)) / (n + 1))
	p.rss = max(p.rss, q.rss)
	p.anon = max(p.anon, q.anon)
	p.peak = max(p.peak, q.peak)
}

func (p *phase) cpuPerRequest() time.Duration {
	return (p.cpu + p.redis) / time.Duration(max(p.requests, 1))
}

// A server is one started server to measure.
type server struct {
	pid, redisPid int
	grpcAddr      string
	pprofAddr     string
	redis         *redis.Client
	stop          func()
}

// measureAll starts every server, checks and warms each, then measures
// them in interleaved rounds (bare, memory, redis, bare, ...), so that a
// change in the machine's load during the run touches every server alike.
func measureAll(ctx context.Context, c *config, fx *fixture, dir string) ([]*result, error) {
	var servers []*server
	defer func() {
		for _, srv := range servers {
			srv.stop()
		}
	}()
	results := make([]*result, len(c.scenarios))
	for i, name := range c.scenarios {
		srv, err := startServer(ctx, c, fx, dir, name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		servers = append(servers, srv)
		if err := checkAll(ctx, srv.grpcAddr, fx.requests); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if _, err := runGHZ(ctx, c, fx, srv.grpcAddr, c.warmup, 0); err != nil {
			return nil, fmt.Errorf("%s: warm-up: %w", name, err)
		}
		results[i] = &result{name: name, max: &phase{}}
		if c.rate > 0 {
			results[i].atRate = &phase{}
		}
	}
	for round := range c.rounds {
		for i, srv := range servers {
			res := results[i]
			if srv.redis != nil {
				if err := srv.redis.ConfigResetStat(ctx).Err(); err != nil {
					return nil, err
				}
			}
			profile := func() error { return nil }
			if srv.pprofAddr != "" && round == c.rounds-1 {
				res.profile = profilePath(c, c.scenarios[i])
				profile = startProfile(ctx, srv.pprofAddr, c.duration, res.profile)
			}
			p, err := measurePhase(ctx, c, fx, srv, c.duration, 0)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", res.name, err)
			}
			res.max.add(p)
			if err := profile(); err != nil {
				return nil, fmt.Errorf("cpu profile: %w", err)
			}
			if srv.redis != nil {
				calls, usec, reads, err := evalStats(ctx, srv.redis)
				if err != nil {
					return nil, err
				}
				res.evalCalls += calls
				res.evalUsec += usec
				res.redisReads += reads
			}
			if c.rate > 0 {
				p, err := measurePhase(ctx, c, fx, srv, c.rateDuration, c.rate)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", res.name, err)
				}
				res.atRate.add(p)
			}
		}
	}
	return results, nil
}

func measurePhase(ctx context.Context, c *config, fx *fixture, srv *server, d time.Duration, rate int) (*phase, error) {
	cpu0, err := procstat.CPUTime(srv.pid)
	if err != nil {
		return nil, err
	}
	var redis0 time.Duration
	if srv.redisPid != 0 {
		if redis0, err = procstat.CPUTime(srv.redisPid); err != nil {
			return nil, err
		}
	}
	ipis0, ipisErr := procstat.IPIs()
	rep, err := runGHZ(ctx, c, fx, srv.grpcAddr, d, rate)
	if err != nil {
		return nil, err
	}
	p := &phase{requests: rep.Count, rps: rep.Rps, ipis: -1}
	if ipis1, err := procstat.IPIs(); err == nil && ipisErr == nil {
		p.ipis = int64(ipis1 - ipis0)
	}
	if p.cpu, err = procstat.CPUTime(srv.pid); err != nil {
		return nil, err
	}
	p.cpu -= cpu0
	if srv.redisPid != 0 {
		if p.redis, err = procstat.CPUTime(srv.redisPid); err != nil {
			return nil, err
		}
		p.redis -= redis0
	}
	mem, err := procstat.ReadMem(srv.pid)
	if err != nil {
		return nil, err
	}
	p.rss, p.peak, p.anon = mem.RSS, mem.Peak, mem.Anon
	for code, n := range rep.StatusCodeDist {
		if code != "OK" {
			p.errors += uint64(n)
			if p.codes == nil {
				p.codes = map[string]uint64{}
			}
			p.codes[code] += uint64(n)
		}
	}
	for _, l := range rep.LatencyDistribution {
		switch l.Percentage {
		case 50:
			p.p50 = l.Latency
		case 99:
			p.p99 = l.Latency
		}
	}
	return p, nil
}

// startServer starts the scenario's server (and redis-server), pinned to
// the server CPUs, and waits until it answers.
//
// A scenario is bare, memory or redis, optionally followed by environment
// variables for tollgate and another tollgate binary, to compare two builds
// in one run: "memory:GOGC=400+GOMEMLIMIT=64MiB", "redis@bin/tollgate-old".
func startServer(ctx context.Context, c *config, fx *fixture, dir, name string) (*server, error) {
	spec, tollgate, other := strings.Cut(name, "@")
	if !other {
		tollgate = c.tollgate
	}
	kind, envSpec, _ := strings.Cut(spec, ":")
	kind, redisCPU, placed := strings.Cut(kind, "/")
	if !placed {
		redisCPU = c.redisCPU
	} else if kind != "redis" {
		return nil, fmt.Errorf("scenario %q: only redis takes /CPUS, redis-server's CPUs", name)
	} else if c.unpinned {
		redisCPU = ""
	}
	var env []string
	if envSpec != "" {
		env = append(os.Environ(), strings.Split(envSpec, "+")...)
	}
	if kind == "bare" && (env != nil || other) {
		return nil, fmt.Errorf("scenario %q: environment and binary are for tollgate only", name)
	}
	logName := fileName(name)
	srv := &server{grpcAddr: freeAddr()}
	var procs []*exec.Cmd
	srv.stop = func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
		if srv.redis != nil {
			srv.redis.Close()
		}
	}
	start := func(cpu string, env []string, bin string, args ...string) (*exec.Cmd, error) {
		logf, err := os.Create(filepath.Join(dir, logName+"-"+filepath.Base(bin)+".log"))
		if err != nil {
			return nil, err
		}
		defer logf.Close()
		if cpu != "" {
			args = append([]string{"-c", cpu, bin}, args...)
			bin = "taskset"
		}
		cmd := exec.Command(bin, args...) // taskset execs bin: same pid
		cmd.Stdout, cmd.Stderr, cmd.Env = logf, logf, env
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		procs = append(procs, cmd)
		return cmd, nil
	}
	fail := func(err error) (*server, error) {
		srv.stop()
		return nil, err
	}

	var args []string
	switch kind {
	case "bare":
		args := []string{"-addr", srv.grpcAddr}
		if c.cpuProfile != "" {
			srv.pprofAddr = freeAddr()
			args = append(args, "-pprof-addr", srv.pprofAddr)
		}
		cmd, err := start(c.serverCPU, nil, c.bare, args...)
		if err != nil {
			return fail(err)
		}
		srv.pid = cmd.Process.Pid
		return srv, waitGRPC(ctx, srv.grpcAddr, fx.requests[0])
	case "memory":
	case "redis":
		addr := freeAddr()
		host, port, _ := net.SplitHostPort(addr)
		cmd, err := start(redisCPU, nil, c.redisServer, "--bind", host, "--port", port, "--save", "", "--appendonly", "no", "--dir", dir)
		if err != nil {
			return fail(err)
		}
		srv.redisPid = cmd.Process.Pid
		srv.redis = redis.NewClient(&redis.Options{Addr: addr})
		if err := poll(ctx, func() error { return srv.redis.Ping(ctx).Err() }); err != nil {
			return fail(fmt.Errorf("redis-server: %w", err))
		}
		args = append(args, "--quota-store", "redis", "--redis-addr", addr)
	default:
		return nil, fmt.Errorf("unknown scenario %q: want bare, memory, redis or redis/CPUS, then optionally :VAR=value+VAR=value", name)
	}
	health := freeAddr()
	args = append([]string{"serve", "--policy-dir", fx.policyDir, "--grpc-addr", srv.grpcAddr,
		"--http-addr", "", "--metrics-addr", freeAddr(), "--health-addr", health}, args...)
	if c.cpuProfile != "" {
		srv.pprofAddr = freeAddr()
		args = append(args, "--pprof-addr", srv.pprofAddr)
	}
	args = append(args, c.serveArgs...)
	cmd, err := start(c.serverCPU, env, tollgate, args...)
	if err != nil {
		return fail(err)
	}
	srv.pid = cmd.Process.Pid
	if err := poll(ctx, func() error { return httpOK("http://" + health + "/readyz") }); err != nil {
		return fail(fmt.Errorf("tollgate not ready: %w", err))
	}
	return srv, nil
}

// checkAll sends every request once and fails unless each is allowed, so
// that the load measures full allows (token, owner, quota), and warms the
// token cache.
func checkAll(ctx context.Context, addr string, reqs []*authv3.CheckRequest) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	for i, req := range reqs {
		resp, err := client.Check(ctx, req)
		if err != nil {
			return fmt.Errorf("check %d: %w", i, err)
		}
		if resp.GetStatus().GetCode() != 0 {
			return fmt.Errorf("check %d denied: %v %s", i, resp.GetStatus(), resp.GetDeniedResponse().GetBody())
		}
	}
	return nil
}

func waitGRPC(ctx context.Context, addr string, req *authv3.CheckRequest) error {
	return poll(ctx, func() error { return checkAll(ctx, addr, []*authv3.CheckRequest{req}) })
}

func httpOK(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// poll calls f until it succeeds, for at most 20 s.
func poll(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ghzReport is the part of ghz's JSON report that loadtest reads.
type ghzReport struct {
	Count               uint64         `json:"count"`
	Rps                 float64        `json:"rps"`
	StatusCodeDist      map[string]int `json:"statusCodeDistribution"`
	LatencyDistribution []struct {
		Percentage int           `json:"percentage"`
		Latency    time.Duration `json:"latency"`
	} `json:"latencyDistribution"`
}

// runGHZ runs ghz against addr for d, unthrottled when rate is 0, pinned
// to the client CPUs.
func runGHZ(ctx context.Context, c *config, fx *fixture, addr string, d time.Duration, rate int) (*ghzReport, error) {
	args := []string{"--insecure", "--protoset", fx.protoset, "--call", "envoy.service.auth.v3.Authorization.Check",
		"--binary-file", fx.data, "-c", fmt.Sprint(c.concurrency), "--connections", fmt.Sprint(c.connections),
		"-z", d.String(), "--format", "json"}
	if rate > 0 {
		args = append(args, "--rps", fmt.Sprint(rate))
	}
	bin := c.ghz
	if c.clientCPU != "" {
		args = append([]string{"-c", c.clientCPU, bin}, args...)
		bin = "taskset"
	}
	cmd := exec.CommandContext(ctx, bin, append(args, addr)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ghz: %w: %s", err, stderr.String())
	}
	var rep ghzReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("ghz report: %w", err)
	}
	if rep.Count == 0 {
		return nil, errors.New("ghz sent no requests")
	}
	return &rep, nil
}

// evalStats returns the calls and total time of EVALSHA and EVAL since the
// last CONFIG RESETSTAT, from INFO commandstats, and the reads of client
// sockets redis-server made (INFO stats, Redis 6.2+; 0 before): calls per
// read is the size of the pipelines Redis saw.
func evalStats(ctx context.Context, rdb *redis.Client) (calls, usec, reads int64, err error) {
	info, err := rdb.Info(ctx, "commandstats", "stats").Result()
	if err != nil {
		return 0, 0, 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if n, ok := strings.CutPrefix(line, "total_reads_processed:"); ok {
			reads, _ = strconv.ParseInt(n, 10, 64)
			continue
		}
		if !strings.HasPrefix(line, "cmdstat_evalsha:") && !strings.HasPrefix(line, "cmdstat_eval:") {
			continue
		}
		_, stats, _ := strings.Cut(line, ":")
		for _, kv := range strings.Split(stats, ",") {
			var n int64
			if _, err := fmt.Sscanf(kv, "calls=%d", &n); err == nil {
				calls += n
			}
			if _, err := fmt.Sscanf(kv, "usec=%d", &n); err == nil {
				usec += n
			}
		}
	}
	return calls, usec, reads, nil
}

// fileName turns a scenario's name into a part of a file name.
func fileName(scenario string) string {
	return strings.NewReplacer(":", "-", "+", "-", "=", "", "@", "-", "/", "-").Replace(scenario)
}

// profilePath is where the CPU profile of scenario goes: -cpuprofile as
// given when one scenario is measured, else with the scenario's name
// before the extension.
func profilePath(c *config, scenario string) string {
	if len(c.scenarios) < 2 {
		return c.cpuProfile
	}
	ext := filepath.Ext(c.cpuProfile)
	return strings.TrimSuffix(c.cpuProfile, ext) + "-" + fileName(scenario) + ext
}

// startProfile fetches a CPU profile of d from a server's pprof endpoint in
// the background; the returned function waits for it.
func startProfile(ctx context.Context, addr string, d time.Duration, path string) func() error {
	errc := make(chan error, 1)
	go func() {
		secs := max(int(d/time.Second)-1, 1)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), nil)
		if err != nil {
			errc <- err
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			errc <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			errc <- fmt.Errorf("pprof: %s", resp.Status)
			return
		}
		f, err := os.Create(path)
		if err != nil {
			errc <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		errc <- err
	}()
	return func() error { return <-errc }
}

func report(out io.Writer, c *config, results []*result) {
	var bare *result
	width := len("server")
	for _, r := range results {
		if r.name == "bare" {
			bare = r
		}
		width = max(width, len(r.name))
	}
	// ratio is CPU per request over the bare server's, for all rounds
	// together and for each round on its own (the spread).
	ratio := func(r *result, p func(*result) *phase) (string, string) {
		if bare == nil {
			return "-", "-"
		}
		b := p(bare)
		lo, hi := 0.0, 0.0
		for i, d := range p(r).perRequest {
			x := float64(d) / float64(b.perRequest[i])
			if i == 0 || x < lo {
				lo = x
			}
			hi = max(hi, x)
		}
		return fmt.Sprintf("%.2f", float64(p(r).cpuPerRequest())/float64(b.cpuPerRequest())), fmt.Sprintf("%.2f-%.2f", lo, hi)
	}
	table := func(title string, p func(*result) *phase) {
		fmt.Fprintln(out, title)
		fmt.Fprintf(out, "  %-*s %9s %7s %6s %24s %6s %11s %7s %7s %7s %7s %7s %7s\n", width,
			"server", "requests", "req/s", "errors", "CPU µs/req (+redis)", "×bare", "per round", "IPI/req", "p50 ms", "p99 ms", "RSS MB", "anon MB", "peak MB")
		for _, r := range results {
			ph := p(r)
			cpu := fmt.Sprintf("%.1f", us(ph.cpuPerRequest()))
			if ph.redis > 0 {
				n := time.Duration(max(ph.requests, 1))
				cpu = fmt.Sprintf("%.1f (%.1f + %.1f)", us(ph.cpuPerRequest()), us(ph.cpu/n), us(ph.redis/n))
			}
			all, spread := ratio(r, p)
			ipis := "-"
			if ph.ipis >= 0 {
				ipis = fmt.Sprintf("%.2f", float64(ph.ipis)/float64(max(ph.requests, 1)))
			}
			fmt.Fprintf(out, "  %-*s %9d %7.0f %6d %24s %6s %11s %7s %7.2f %7.2f %7.1f %7.1f %7.1f\n", width,
				r.name, ph.requests, ph.rps, ph.errors, cpu, all, spread, ipis, ms(ph.p50), ms(ph.p99), mb(ph.rss), mb(ph.anon), mb(ph.peak))
		}
		fmt.Fprintln(out)
	}
	table(fmt.Sprintf("unthrottled, %d rounds of %s:", c.rounds, c.duration), func(r *result) *phase { return r.max })
	if c.rate > 0 {
		table(fmt.Sprintf("at %d req/s, %d rounds of %s:", c.rate, c.rounds, c.rateDuration), func(r *result) *phase { return r.atRate })
	}
	for _, r := range results {
		for _, ph := range []*phase{r.max, r.atRate} {
			if ph != nil && ph.errors > 0 {
				fmt.Fprintf(out, "%s: errors by gRPC code %v (ghz cancels the calls in flight when a phase ends)\n", r.name, ph.codes)
			}
		}
		if r.evalCalls > 0 {
			fmt.Fprintf(out, "%s: take.lua ran %d times (unthrottled phases), %.1f µs each inside Redis (INFO commandstats), %.2f runs per socket read (INFO stats); redis-server CPU %.1f µs per decision\n",
				r.name, r.evalCalls, float64(r.evalUsec)/float64(r.evalCalls), float64(r.evalCalls)/float64(max(r.redisReads, 1)), us(r.max.redis/time.Duration(max(r.max.requests, 1))))
		}
	}
	fmt.Fprintln(out, "CPU: user+system time of the server process (and redis-server) from /proc, per answered Check. RSS at the end of a phase (VmRSS), its anonymous part (RssAnon: heap, stacks; the rest is the binary's pages), peak = VmHWM. IPI/req: the machine's rescheduling and function-call interrupts (/proc/interrupts RES + CAL, ghz's included) per Check: a wake-up of a process on another CPU.")
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

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mb(b int64) float64         { return float64(b) / (1 << 20) }
