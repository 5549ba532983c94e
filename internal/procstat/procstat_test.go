package procstat

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestIPIs(t *testing.T) {
	got, err := ipis(filepath.Join("testdata", "interrupts"))
	if err != nil {
		t.Fatal(err)
	}
	// RES and CAL of both CPUs; LOC, TLB and device interrupts are not
	// one CPU waking another.
	if want := uint64(2334461 + 925340 + 4365751 + 8208328); got != want {
		t.Errorf("ipis = %d, want %d", got, want)
	}
}

func TestIPIsWithoutCounters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "interrupts")
	if err := os.WriteFile(path, []byte("  CPU0\nLOC: 5 Local timer interrupts\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ipis(path); err == nil {
		t.Error("ipis without RES or CAL lines: want an error")
	}
}

func TestIPIsOfThisMachine(t *testing.T) {
	if _, err := os.Stat("/proc/interrupts"); err != nil || runtime.NumCPU() < 2 {
		t.Skip("no /proc/interrupts, or one CPU")
	}
	n, err := IPIs()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("IPIs() = 0 on a running system")
	}
}
