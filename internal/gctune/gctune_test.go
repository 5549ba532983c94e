package gctune

import (
	"runtime/debug"
	"testing"
	"testing/fstest"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

func TestChoose(t *testing.T) {
	tests := map[string]struct {
		env       map[string]string
		fs        fstest.MapFS
		gogcFrom  string
		limit     int64
		limitFrom string
	}{
		"no environment and no container limit": {
			fs: fstest.MapFS{}, gogcFrom: "default", limit: DefaultMemoryLimit, limitFrom: "default",
		},
		"the process's cgroup v2 limit": {
			fs: fstest.MapFS{
				"proc/self/cgroup":                          file("0::/kubepods/pod1/c1\n"),
				"sys/fs/cgroup/kubepods/pod1/c1/memory.max": file("536870912\n"),
				"sys/fs/cgroup/memory.max":                  file("max\n"),
			},
			gogcFrom: "default", limit: 536870912 * 9 / 10, limitFrom: "container memory limit",
		},
		"a cgroup v2 namespace shows the limit at the root": {
			fs: fstest.MapFS{
				"proc/self/cgroup":         file("0::/\n"),
				"sys/fs/cgroup/memory.max": file("268435456\n"),
			},
			gogcFrom: "default", limit: 268435456 * 9 / 10, limitFrom: "container memory limit",
		},
		"cgroup v2 without a limit": {
			fs: fstest.MapFS{
				"proc/self/cgroup":         file("0::/\n"),
				"sys/fs/cgroup/memory.max": file("max\n"),
			},
			gogcFrom: "default", limit: DefaultMemoryLimit, limitFrom: "default",
		},
		"a cgroup v1 limit": {
			fs: fstest.MapFS{
				"proc/self/cgroup": file("5:devices:/docker/abc\n4:cpu,memory:/docker/abc\n"),
				"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": file("1073741824\n"),
			},
			gogcFrom: "default", limit: 1073741824 * 9 / 10, limitFrom: "container memory limit",
		},
		"cgroup v1 without a limit": {
			fs: fstest.MapFS{
				"proc/self/cgroup":                           file("4:memory:/\n"),
				"sys/fs/cgroup/memory/memory.limit_in_bytes": file("9223372036854771712\n"),
			},
			gogcFrom: "default", limit: DefaultMemoryLimit, limitFrom: "default",
		},
		"the environment's GOGC and GOMEMLIMIT win over every default": {
			env: map[string]string{"GOGC": "50", "GOMEMLIMIT": "1GiB"},
			fs: fstest.MapFS{
				"proc/self/cgroup":         file("0::/\n"),
				"sys/fs/cgroup/memory.max": file("268435456\n"),
			},
			gogcFrom: "GOGC", limitFrom: "GOMEMLIMIT",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s := Choose(Options{LookupEnv: env(tt.env), FS: tt.fs})
			if s.GCPercentFrom != tt.gogcFrom || s.MemoryLimitFrom != tt.limitFrom {
				t.Fatalf("GOGC from %q, GOMEMLIMIT from %q; want %q, %q", s.GCPercentFrom, s.MemoryLimitFrom, tt.gogcFrom, tt.limitFrom)
			}
			if tt.gogcFrom == "default" && s.GCPercent != DefaultGCPercent {
				t.Errorf("GOGC %d, want %d", s.GCPercent, DefaultGCPercent)
			}
			if tt.limitFrom != "GOMEMLIMIT" && s.MemoryLimit != tt.limit {
				t.Errorf("memory limit %d, want %d", s.MemoryLimit, tt.limit)
			}
		})
	}
}

func TestApply(t *testing.T) {
	gogc, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(gogc)
		debug.SetMemoryLimit(limit)
	})
	t.Run("defaults are set", func(t *testing.T) {
		s := Apply(Options{LookupEnv: env(nil), FS: fstest.MapFS{}})
		if got := debug.SetGCPercent(100); got != DefaultGCPercent || s.GCPercent != DefaultGCPercent {
			t.Errorf("GOGC %d (reported %d), want %d", got, s.GCPercent, DefaultGCPercent)
		}
		if got := debug.SetMemoryLimit(-1); got != DefaultMemoryLimit {
			t.Errorf("memory limit %d, want %d", got, DefaultMemoryLimit)
		}
	})
	t.Run("what the environment set is kept and reported", func(t *testing.T) {
		debug.SetGCPercent(77) // as the runtime does for GOGC=77
		debug.SetMemoryLimit(123 << 20)
		s := Apply(Options{LookupEnv: env(map[string]string{"GOGC": "77", "GOMEMLIMIT": "123MiB"}), FS: fstest.MapFS{}})
		if got := debug.SetGCPercent(100); got != 77 || s.GCPercent != 77 {
			t.Errorf("GOGC %d (reported %d), want 77", got, s.GCPercent)
		}
		if got := debug.SetMemoryLimit(-1); got != 123<<20 || s.MemoryLimit != 123<<20 {
			t.Errorf("memory limit %d (reported %d), want 123MiB", got, s.MemoryLimit)
		}
		if want := "GOGC=77 (GOGC), GOMEMLIMIT=123MiB (GOMEMLIMIT)"; s.String() != want {
			t.Errorf("String() = %q, want %q", s, want)
		}
	})
}
