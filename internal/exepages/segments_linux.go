package exepages

import (
	"debug/elf"
	"fmt"
)

// segment is the address range of a PT_LOAD segment, page-aligned
// outwards.
type segment struct{ start, end uintptr }

// readOnlySegments reads the ELF header of the executable at path (the
// running one: /proc/self/exe) and returns its read-only PT_LOAD segments,
// or why none of its pages may be released.
//
// Only a statically linked ET_EXEC executable qualifies. It is mapped at
// the addresses its header names and nothing writes to its read-only
// segments, so each of their pages is a clean copy of the file. A
// position-independent (ET_DYN, -buildmode=pie) or dynamically linked
// executable has a loader (PT_INTERP) that relocates it (PT_DYNAMIC): it
// writes pointers into .data.rel.ro and then makes that range read-only
// (PT_GNU_RELRO), so that it shows as r--p in /proc/self/maps, yet
// dropping its pages would bring back the file's unrelocated bytes and
// crash the process at its next use of them.
func readOnlySegments(path string, pageSize uintptr) ([]segment, string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("exepages: read the executable's ELF header: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC {
		return nil, fmt.Sprintf("the executable is %s, not ET_EXEC: position-independent, relocated at load", f.Type), nil
	}
	var segs []segment
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP, elf.PT_DYNAMIC, elf.PT_GNU_RELRO:
			return nil, fmt.Sprintf("the executable has a %s segment: dynamically linked, relocated at load", p.Type), nil
		case elf.PT_LOAD:
			if p.Flags&elf.PF_W == 0 && p.Memsz > 0 {
				start := uintptr(p.Vaddr) &^ (pageSize - 1)
				end := (uintptr(p.Vaddr+p.Memsz) + pageSize - 1) &^ (pageSize - 1)
				segs = append(segs, segment{start, end})
			}
		}
	}
	if len(segs) == 0 {
		return nil, "the executable has no read-only PT_LOAD segment", nil
	}
	return segs, "", nil
}

// within reports whether m lies inside one of segs.
func (m mapping) within(segs []segment) bool {
	for _, s := range segs {
		if m.start >= s.start && m.end <= s.end {
			return true
		}
	}
	return false
}
