package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
)

// The normal client runs in a process of its own, so that its latency is
// the server's and not that of a client process busy flooding. It is this
// program started with -probe: it connects, checks once, prints "ready",
// then for each line "D" it reads (a duration) it checks for D and prints
// the result as one JSON line, until its input ends.

// probeWire is a probeResult on the wire.
type probeWire struct {
	Latencies []time.Duration `json:"latencies"`
	Errors    map[string]int  `json:"errors"`
}

// runProbe is the probe process's main.
func runProbe(addr, requestFile string, interval time.Duration) error {
	b, err := os.ReadFile(requestFile)
	if err != nil {
		return err
	}
	req := &authv3.CheckRequest{}
	if err := proto.Unmarshal(b, req); err != nil {
		return err
	}
	conn, err := dial(addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := checkOnce(authv3.NewAuthorizationClient(conn), req); err != nil {
		return fmt.Errorf("first check: %w", err)
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	for in.Scan() {
		d, err := time.ParseDuration(strings.TrimSpace(in.Text()))
		if err != nil {
			return err
		}
		p := probe(context.Background(), conn, req, d, interval)
		if err := enc.Encode(probeWire{Latencies: p.latencies, Errors: p.errors.counts}); err != nil {
			return err
		}
	}
	return in.Err()
}

// A prober drives a probe process.
type prober struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// startProber starts the probe process against addr, on the client CPUs,
// and waits until its connection is up.
func startProber(c *config, fx *fixture, addr string) (*prober, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	bin, args := self, []string{"-probe", addr, "-probe-request", fx.requestFile, "-probe-interval", c.probeInterval.String()}
	if c.clientCPU != "" {
		args = append([]string{"-c", c.clientCPU, bin}, args...)
		bin = "taskset"
	}
	if c.probeNice != 0 {
		// Ahead of the flooding process on the shared CPU, so that the
		// latency measured is the server's.
		args = append([]string{"-n", fmt.Sprint(c.probeNice), bin}, args...)
		bin = "nice"
	}
	p := &prober{cmd: exec.Command(bin, args...)}
	p.cmd.Stderr = os.Stderr
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.out = bufio.NewScanner(stdout)
	p.out.Buffer(nil, 64<<20)
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	if !p.out.Scan() || p.out.Text() != "ready" {
		p.close()
		return nil, errors.New("probe process did not start")
	}
	return p, nil
}

// run has the probe check for d and returns what it saw.
func (p *prober) run(d time.Duration) (*probeResult, error) {
	if _, err := fmt.Fprintln(p.in, d); err != nil {
		return nil, err
	}
	if !p.out.Scan() {
		return nil, fmt.Errorf("probe process: %v", p.out.Err())
	}
	var w probeWire
	if err := json.Unmarshal(p.out.Bytes(), &w); err != nil {
		return nil, err
	}
	r := &probeResult{latencies: w.Latencies}
	r.errors.add(w.Errors)
	return r, nil
}

func (p *prober) close() {
	p.in.Close()
	if err := p.cmd.Wait(); err != nil {
		_ = p.cmd.Process.Kill()
	}
}
