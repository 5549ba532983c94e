package exepages

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Release unmaps this process's read-only mappings of its executable (code
// and read-only data) with madvise(MADV_DONTNEED): the pages leave the
// process's RSS and stay in the page cache, and the next access to any of
// them maps it again (a minor fault). Writable mappings are left alone: a
// private page that was written would lose its contents. So is anything
// that is not provably a clean copy of the file: Release acts only on a
// statically linked ET_EXEC executable, and only on mappings inside its
// read-only PT_LOAD segments (see readOnlySegments: a PIE or dynamically
// linked executable's relocated read-only data would be lost); otherwise
// it releases nothing and says why in Released.Skipped. Nothing is
// released while a tracer is attached either, whose breakpoints are
// private copies of code pages.
//
// Call it once start-up is over; it is safe at any time.
func Release() (Released, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return Released{}, fmt.Errorf("exepages: %w", err)
	}
	if traced(status) {
		return Released{Skipped: "a tracer is attached"}, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return Released{}, fmt.Errorf("exepages: %w", err)
	}
	// /proc/self/exe is the file this process runs, even if exe has been
	// replaced since.
	segs, skip, err := readOnlySegments("/proc/self/exe", uintptr(os.Getpagesize()))
	if err != nil || skip != "" {
		return Released{Skipped: skip}, err
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return Released{}, fmt.Errorf("exepages: %w", err)
	}
	var r Released
	for _, m := range readOnlyMappings(maps, exe) {
		if !m.within(segs) {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED); errno != 0 {
			return r, fmt.Errorf("exepages: madvise %#x-%#x: %w", m.start, m.end, errno)
		}
		r.Bytes += int64(m.end - m.start)
	}
	return r, nil
}

// traced reports whether /proc/self/status names a tracer.
func traced(status []byte) bool {
	for line := range bytes.Lines(status) {
		if v, ok := bytes.CutPrefix(line, []byte("TracerPid:")); ok {
			return string(bytes.TrimSpace(v)) != "0"
		}
	}
	return false
}

// mapping is an address range of /proc/self/maps.
type mapping struct{ start, end uintptr }

// readOnlyMappings returns the private mappings of path in maps (the
// format of /proc/self/maps) that can be neither written nor shared.
func readOnlyMappings(maps []byte, path string) []mapping {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// address perms offset dev inode path
		f := strings.Fields(sc.Text())
		if len(f) != 6 || f[5] != path || len(f[1]) != 4 || f[1][0] != 'r' || f[1][1] != '-' || f[1][3] != 'p' {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, mapping{uintptr(start), uintptr(end)})
	}
	return out
}
