// Package gctune sets the garbage collector's defaults for tollgate serve:
// a higher GOGC than Go's 100, so that the collector runs less often, and
// a soft memory limit (GOMEMLIMIT) that keeps the heap within the
// container's memory when the live heap grows. Each applies only when the
// environment does not set it: GOGC and GOMEMLIMIT keep their usual
// meaning (docs/loadtest.md, "Memory and the garbage collector").
package gctune

import (
	"bufio"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultGCPercent is tollgate's GOGC. Most of a check's allocations are
// gRPC's and protobuf's and die with the check, while the live heap is a
// few megabytes, so a collection finds little to keep: at Go's default of
// 100 the collector took a fifth of the CPU under load. The heap grows to
// 1+DefaultGCPercent/100 times the live heap: 3×, about 9 MB more RSS
// than Go's default under make loadtest's load. 300 and 400 cut CPU a few
// per cent more for 4 and 9 MB more (docs/loadtest.md).
const DefaultGCPercent = 200

// DefaultMemoryLimit is the soft memory limit without a container memory
// limit: the ceiling that tollgate's default cache and store bounds keep
// the live heap well under, so that the collector only works harder, never
// thrashes, as the heap nears it.
const DefaultMemoryLimit = 256 << 20

// containerShare is the part of a container's memory limit given to the Go
// heap; the rest is for the binary's pages, thread stacks and the kernel's
// buffers charged to the container.
const containerShare = 0.9

// Settings are the collector's settings and where they come from.
type Settings struct {
	// GCPercent is GOGC; negative means off.
	GCPercent int
	// MemoryLimit is in bytes; math.MaxInt64 means none.
	MemoryLimit int64
	// GCPercentFrom and MemoryLimitFrom say where each setting came from:
	// "GOGC"/"GOMEMLIMIT" (the environment), "default" or "container
	// memory limit".
	GCPercentFrom, MemoryLimitFrom string
}

// Options are where Choose looks.
type Options struct {
	// LookupEnv is os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// FS is the root file system, for /proc/self/cgroup and /sys/fs/cgroup.
	FS fs.FS
}

// Choose returns the defaults that Apply sets for what the environment
// does not set: DefaultGCPercent, and 90% of the container's memory limit
// or DefaultMemoryLimit without one. A setting the environment makes is
// reported as such, with the runtime's value (read by Apply) left to the
// caller.
func Choose(o Options) Settings {
	s := Settings{GCPercent: DefaultGCPercent, GCPercentFrom: "default", MemoryLimit: DefaultMemoryLimit, MemoryLimitFrom: "default"}
	if _, ok := o.LookupEnv("GOGC"); ok {
		s.GCPercentFrom = "GOGC"
	}
	if _, ok := o.LookupEnv("GOMEMLIMIT"); ok {
		s.MemoryLimitFrom = "GOMEMLIMIT"
	} else if limit, ok := containerMemoryLimit(o.FS); ok {
		s.MemoryLimit, s.MemoryLimitFrom = int64(float64(limit)*containerShare), "container memory limit"
	}
	return s
}

// Apply sets the defaults that Choose returns for what the environment
// does not set, and returns the settings in effect.
func Apply(o Options) Settings {
	s := Choose(o)
	if s.GCPercentFrom == "GOGC" {
		// The runtime parsed GOGC at start; SetGCPercent returns it.
		s.GCPercent = debug.SetGCPercent(DefaultGCPercent)
		debug.SetGCPercent(s.GCPercent)
	} else {
		debug.SetGCPercent(s.GCPercent)
	}
	if s.MemoryLimitFrom == "GOMEMLIMIT" {
		s.MemoryLimit = debug.SetMemoryLimit(-1) // a negative limit reads it
	} else {
		debug.SetMemoryLimit(s.MemoryLimit)
	}
	return s
}

// unlimited is the smallest value cgroup v1 reports for "no limit" (the
// largest page-aligned int64 on any page size).
const unlimited = 1 << 60

// containerMemoryLimit returns the memory limit of the process's cgroup,
// v2 (memory.max) or v1 (memory.limit_in_bytes), if it has one.
func containerMemoryLimit(fsys fs.FS) (int64, bool) {
	for _, file := range cgroupLimitFiles(fsys) {
		b, err := fs.ReadFile(fsys, file)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= unlimited {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// cgroupLimitFiles lists the files that may hold the memory limit, most
// specific first: the process's own cgroup as /proc/self/cgroup names it,
// then the root of the mount (a container's cgroup namespace).
func cgroupLimitFiles(fsys fs.FS) []string {
	var files []string
	if f, err := fsys.Open("proc/self/cgroup"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// hierarchy-ID:controllers:path
			parts := strings.SplitN(sc.Text(), ":", 3)
			if len(parts) != 3 {
				continue
			}
			p := strings.TrimPrefix(path.Clean("/"+parts[2]), "/")
			switch {
			case parts[0] == "0" && parts[1] == "":
				files = append(files, path.Join("sys/fs/cgroup", p, "memory.max"))
			case hasController(parts[1], "memory"):
				files = append(files, path.Join("sys/fs/cgroup/memory", p, "memory.limit_in_bytes"))
			}
		}
		f.Close()
	}
	return append(files, "sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes")
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// String describes s for the start-up log.
func (s Settings) String() string {
	gogc, limit := strconv.Itoa(s.GCPercent), fmt.Sprintf("%dMiB", s.MemoryLimit>>20)
	if s.GCPercent < 0 {
		gogc = "off"
	}
	if s.MemoryLimit == math.MaxInt64 {
		limit = "off"
	}
	return fmt.Sprintf("GOGC=%s (%s), GOMEMLIMIT=%s (%s)", gogc, s.GCPercentFrom, limit, s.MemoryLimitFrom)
}

// OSOptions are the options of the running process.
func OSOptions() Options { return Options{LookupEnv: os.LookupEnv, FS: os.DirFS("/")} }
