// Package procstat reads what benchmarks measure of a running process from
// /proc: CPU time and resident memory.
package procstat

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// CPUTime returns the user plus system CPU time that process pid has used,
// all threads included.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// fields are counted from after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// Memory returns the resident set size and its peak (VmRSS, VmHWM) of
// process pid, in bytes.
func Memory(pid int) (rss, peak int64, err error) {
	m, err := ReadMem(pid)
	return m.RSS, m.Peak, err
}

// Mem is a process's resident memory, in bytes.
type Mem struct {
	RSS  int64 // VmRSS
	Peak int64 // VmHWM, the largest RSS so far
	// Anon is the anonymous part of RSS (RssAnon): heap and stacks; the
	// rest is mostly the pages of the binary and its libraries.
	Anon int64
}

// ReadMem returns the resident memory of process pid.
func ReadMem(pid int) (Mem, error) {
	var m Mem
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	defer f.Close()
	fields := map[string]*int64{"VmRSS": &m.RSS, "VmHWM": &m.Peak, "RssAnon": &m.Anon}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		dst := fields[name]
		if !ok || dst == nil {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return m, fmt.Errorf("/proc/%d/status %s: %w", pid, name, err)
		}
		*dst = kb << 10
	}
	return m, sc.Err()
}

// IPIs returns the inter-processor interrupts that woke or interrupted a
// CPU so far, on all CPUs: rescheduling (RES, a task woken for another
// CPU) and function-call (CAL) interrupts in /proc/interrupts. In a virtual
// machine each costs an exit to the hypervisor, so a round trip between
// processes on two CPUs costs more than on one.
func IPIs() (uint64, error) {
	return ipis("/proc/interrupts")
}

func ipis(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total uint64
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || (fields[0] != "RES:" && fields[0] != "CAL:") {
			continue
		}
		found++
		for _, f := range fields[1:] {
			n, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				break // the description after the per-CPU counts
			}
			total += n
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if found == 0 {
		return 0, fmt.Errorf("%s: no RES or CAL line", path)
	}
	return total, nil
}
