package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// idleScenario holds c.idleConns raw TCP connections to the gRPC port that
// never send a byte, with the server's descriptors limited to
// c.serverNofile, and meanwhile tries what operators and Envoy need:
// /readyz, the HTTP port, a new gRPC connection, the existing one, and a
// policy reload. After c.settle it counts the connections the server
// closed.
func idleScenario(ctx context.Context, c *config, fx *fixture, out io.Writer) error {
	fmt.Fprintf(out, "idle: %d raw TCP connections to the gRPC port that never send a byte; server RLIMIT_NOFILE %d\n", c.idleConns, c.serverNofile)
	srv, err := startServer(ctx, c, fx, "idle", c.serverNofile)
	if err != nil {
		return err
	}
	defer srv.stop()
	existing, err := dial(srv.grpc)
	if err != nil {
		return err
	}
	defer existing.Close()
	if _, err := checkOnce(authv3.NewAuthorizationClient(existing), fx.request); err != nil {
		return fmt.Errorf("check before: %w", err)
	}
	fdsBefore := srv.fds()

	var (
		mu      sync.Mutex
		conns   []net.Conn
		dialErr atomic.Int64
		closed  atomic.Int64
		// closedBy counts how the closed connections ended; mu guards it.
		closedBy = map[string]int{}
		wg       sync.WaitGroup
	)
	opened := time.Now()
	sem := make(chan struct{}, 200)
	for range c.idleConns {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", srv.grpc, 3*time.Second)
			<-sem
			if err != nil {
				dialErr.Add(1)
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			// Read fails when the server closes the connection; what it
			// sends before (gRPC's SETTINGS frame) is discarded.
			go func() {
				buf := make([]byte, 512)
				_, err := conn.Read(buf)
				for err == nil {
					_, err = conn.Read(buf)
				}
				closed.Add(1)
				mu.Lock()
				closedBy[closeClass(err)]++
				mu.Unlock()
			}()
		}()
	}
	wg.Wait()
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	fmt.Fprintf(out, "  opened %d connections in %.1fs (%d dials failed); server fds %d before, %d now\n",
		len(conns), time.Since(opened).Seconds(), dialErr.Load(), fdsBefore, srv.fds())
	time.Sleep(time.Second)

	try := func(what string, f func() error) {
		t0 := time.Now()
		err := f()
		result := "ok"
		if err != nil {
			result = "FAILED: " + err.Error()
		}
		fmt.Fprintf(out, "  %-34s %s (%.0f ms)\n", what+":", result, ms(time.Since(t0)))
	}
	try("/readyz", func() error {
		code, _, err := get("http://"+srv.health+"/readyz", 5*time.Second)
		return expect(code, err)
	})
	try("HTTP port, allowed request", func() error {
		req := &http.Request{Method: http.MethodGet, Header: forwardAuthHeader(fx)}
		code, _, err := do(req, "http://"+srv.http+"/", 5*time.Second)
		return expect(code, err)
	})
	try("new gRPC connection, check", func() error {
		conn, err := dial(srv.grpc)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = checkOnce(authv3.NewAuthorizationClient(conn), fx.request)
		return err
	})
	try("existing gRPC connection, check", func() error {
		_, err := checkOnce(authv3.NewAuthorizationClient(existing), fx.request)
		return err
	})
	try("policy reload (added file served)", func() error {
		if err := fx.addReloadPolicy(); err != nil {
			return err
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, body, err := get("http://"+srv.health+"/readyz", 5*time.Second)
			if err == nil && strings.Contains(body, `"policies":2`) {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("not served within 10s (%v %s)", err, strings.TrimSpace(body))
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	if wait := time.Until(opened.Add(c.settle)); wait > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Fprintf(out, "  after %s: the server closed %d of the %d idle connections %v; server fds %d; %d log lines say \"too many open files\"\n",
		c.settle, closed.Load(), len(conns), closedBy, srv.fds(), srv.logMentions("too many open files"))
	return nil
}

// closeClass names how a read of a connection ended.
func closeClass(err error) string {
	switch {
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	}
	return err.Error()
}

// forwardAuthHeader describes the normal request to the HTTP endpoint.
func forwardAuthHeader(fx *fixture) http.Header {
	return http.Header{
		"Authorization":      {"Bearer " + fx.token},
		"X-Forwarded-Method": {"GET"}, "X-Forwarded-Host": {host}, "X-Forwarded-Uri": {"/api/users/alice/tasks/1"},
	}
}

func expect(code int, err error) error {
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("status %d", code)
	}
	return nil
}
