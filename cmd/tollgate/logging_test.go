package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
)

// libraryLogsChild makes TestLibraryLogsAreRecords, run in a child process,
// log through every library instead of testing: the loggers it routes are
// process-wide, controller-runtime's can be set only once per process, and
// only a process of its own shows what reaches the real stderr.
const libraryLogsChild = "TOLLGATE_TEST_LIBRARY_LOGS"

// TestLibraryLogsAreRecords: with serve's logger (--log-level debug
// --log-format json), go-redis, controller-runtime and klog write records
// of serve's one JSON stream on stderr, never lines of their own; go-redis
// at debug.
func TestLibraryLogsAreRecords(t *testing.T) {
	if addr := os.Getenv(libraryLogsChild); addr != "" {
		logLibraries(t, addr)
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now

	cmd := exec.Command(os.Args[0], "-test.run=^TestLibraryLogsAreRecords$", "-test.count=1")
	cmd.Env = append(os.Environ(), libraryLogsChild+"="+addr)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if out, err := cmd.Output(); err != nil {
		t.Fatalf("child: %v\n%s\n%s", err, out, stderr.String())
	}
	records := map[string]map[string]any{}
	for line := range strings.SplitSeq(strings.TrimSpace(stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a line on stderr that is no JSON record: %q\nstderr:\n%s", line, stderr.String())
		}
		msg, _ := rec["msg"].(string)
		records[msg] = rec
	}
	for msg, want := range map[string]map[string]string{
		"reconciled":     {"level": "INFO", "policy": "shop/tasks-api"},
		"lease acquired": {"level": "INFO", "lease": "default/tollgate"},
		"connection pool: failed to dial after 1 attempts: dial tcp " + addr + ": connect: connection refused": {"level": "DEBUG", "logger": "go-redis"},
	} {
		rec := records[msg]
		for k, v := range want {
			if rec[k] != v {
				t.Errorf("record %q: %s=%v, want %s\nstderr:\n%s", msg, k, rec[k], v, stderr.String())
			}
		}
	}
}

// logLibraries is the child's part: serve's logger, then one line from
// each library.
func logLibraries(t *testing.T, redisAddr string) {
	if _, err := newLogger(flagNames{}, "debug", "json"); err != nil {
		t.Fatal(err)
	}
	client, err := ratelimit.NewClient(ratelimit.ClientOptions{Addr: redisAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.Ping(context.Background()).Err(); err == nil {
		t.Fatal(fmt.Errorf("ping of %s succeeded", redisAddr))
	}
	ctrllog.Log.WithName("controller").Info("reconciled", "policy", "shop/tasks-api")
	klog.InfoS("lease acquired", "lease", "default/tollgate")
	klog.Flush()
}
