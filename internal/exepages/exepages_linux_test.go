package exepages

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/progtest"
)

func TestReadOnlyMappings(t *testing.T) {
	const exe = "/usr/local/bin/tollgate"
	maps := `00400000-01ea0000 r-xp 00000000 fe:00 123 /usr/local/bin/tollgate
01ea0000-03ac1000 r--p 01aa0000 fe:00 123 /usr/local/bin/tollgate
03ac1000-03b70000 rw-p 036c1000 fe:00 123 /usr/local/bin/tollgate
03b70000-03b80000 r--s 00000000 fe:00 123 /usr/local/bin/tollgate
03c00000-03c10000 r--p 00000000 fe:00 124 /usr/local/bin/tollgate-old
03d00000-03d10000 r--p 00000000 fe:00 125 /usr/local/bin/tollgate (deleted)
03e00000-03e10000 rw-p 00000000 00:00 0
7ffd0000-7ffd2000 r-xp 00000000 00:00 0 [vdso]
`
	got := readOnlyMappings([]byte(maps), exe)
	want := []mapping{{0x400000, 0x1ea0000}, {0x1ea0000, 0x3ac1000}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %x, want %x: the executable's private code and read-only data only", got, want)
	}
}

func TestTraced(t *testing.T) {
	for status, want := range map[string]bool{
		"Name:\ttollgate\nTracerPid:\t0\nUid:\t0\n":    false,
		"Name:\ttollgate\nTracerPid:\t4242\nUid:\t0\n": true,
		"Name:\ttollgate\n":                            false,
	} {
		if got := traced([]byte(status)); got != want {
			t.Errorf("traced(%q) = %v, want %v", status, got, want)
		}
	}
}

// TestRelease maps every page of the test binary's read-only mappings,
// releases them, and checks that they left the RSS while the program runs
// on. Reading the RSS runs code, which maps some pages again, and each with
// its neighbours (fault-around): in a small binary such as this test's a
// good part of the whole.
func TestRelease(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if traced(status) {
		t.Skip("a tracer is attached: Release releases nothing")
	}
	if _, skip, err := readOnlySegments("/proc/self/exe", uintptr(os.Getpagesize())); err != nil || skip != "" {
		t.Skipf("Release releases nothing from this test binary: %s%v", skip, err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	ms := readOnlyMappings(maps, exe)
	var size int64
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	for _, m := range ms {
		size += int64(m.end - m.start)
		// Reading through /proc/self/mem maps each page into this process.
		buf := make([]byte, m.end-m.start)
		if _, err := mem.ReadAt(buf, int64(m.start)); err != nil {
			t.Fatalf("read %#x-%#x: %v", m.start, m.end, err)
		}
	}
	before := residentKB(t, exe)
	r, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := residentKB(t, exe)
	t.Logf("read-only mappings of %d KB: %d KB resident before Release, %d KB after", size>>10, before, after)
	if r.Bytes != size || r.Skipped != "" {
		t.Fatalf("Release: %+v, want %d bytes released", r, size)
	}
	if before < size>>10*9/10 || after > before*9/10 {
		t.Fatalf("%d KB resident before Release and %d KB after, of %d KB: want nearly all, then less than 90%% of that", before, after, size>>10)
	}
}

// residentKB sums the Rss of path's read-only mappings in /proc/self/smaps.
func residentKB(t *testing.T, path string) int64 {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var kb int64
	in := false
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && len(f[1]) == 4:
			in = len(readOnlyMappings([]byte(sc.Text()), path)) == 1
		case in && len(f) == 3 && f[0] == "Rss:":
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			kb += n
		}
	}
	return kb
}

// TestReleaseInBuilds builds testdata/release, which calls Release and then
// runs code that reads much of the executable's read-only data, the ways
// an executable may be built, and runs each: every one must exit 0, and
// only the statically linked ET_EXEC one may release anything. Without
// the ELF check, the PIE build crashes at its first allocation: Release
// dropped its relocated .data.rel.ro.
func TestReleaseInBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three executables")
	}
	_, ccErr := exec.LookPath("gcc")
	tests := []struct {
		name     string
		cgo      string
		args     []string
		skipped  string // "" when pages must be released
		needsGCC bool
	}{
		{name: "static executable, as hack/build.sh builds it", cgo: "0"},
		{name: "position-independent (-buildmode=pie)", cgo: "0", args: []string{"-buildmode=pie"}, skipped: "ET_DYN"},
		{name: "dynamically linked (cgo, external linker)", cgo: "1", args: []string{"-ldflags=-linkmode=external"},
			skipped: "PT_INTERP", needsGCC: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needsGCC && ccErr != nil {
				t.Skip("no gcc for the external linker")
			}
			build := &progtest.Build{Package: "./testdata/release", Flags: tt.args, Env: []string{"CGO_ENABLED=" + tt.cgo}}
			t.Cleanup(build.Remove)
			bin := build.Path(t)
			var stderr bytes.Buffer
			run := exec.Command(bin)
			run.Stderr = &stderr
			out, err := run.Output()
			if err != nil {
				t.Fatalf("the program failed after Release: %v\n%s%s", err, out, firstLines(stderr.String(), 20))
			}
			var released int64
			var skipped string
			if _, err := fmt.Sscanf(string(out), "released=%d skipped=%q\n", &released, &skipped); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			t.Logf("released %d bytes, skipped %q", released, skipped)
			switch {
			case tt.skipped == "" && (released == 0 || skipped != ""):
				t.Errorf("released %d bytes, skipped %q; want pages released", released, skipped)
			case tt.skipped != "" && (released != 0 || !strings.Contains(skipped, tt.skipped)):
				t.Errorf("released %d bytes, skipped %q; want nothing released, skipped naming %s", released, skipped, tt.skipped)
			}
		})
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	return strings.Join(lines[:min(n, len(lines))], "")
}
