package policyfile

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/policyset"
)

// SourceOptions configures a Source.
type SourceOptions struct {
	// Set receives the policies.
	Set *policyset.Set
	// Paths are policy files and directories, in the order that decides
	// which of two conflicting policies is older.
	Paths []string
	// Logger receives the problems of each file read. Nil discards.
	Logger *slog.Logger
}

// A Source feeds the AuthPolicy documents of files into a policyset.Set,
// one object at a time: a document that cannot be read is rejected (its
// policy keeps its last good version) and never holds back the others in
// its file or directory; a file that is removed deletes its policies; a
// file that turns empty or unparsable keeps them.
//
// Files are read only when their size, modification time or inode
// changed. A Source is not safe for concurrent use: one goroutine syncs
// it (see Run).
type Source struct {
	set   *policyset.Set
	paths []string
	log   *slog.Logger

	files map[string]*fileState // by path
	// supplier maps a policy key to the file whose document supplies it:
	// the first in file order when several define it.
	supplier map[string]string
	// rootProblems are the configured paths that could not be walked at
	// the last scan.
	rootProblems []Problem
}

// fileState is what a Source knows of one file.
type fileState struct {
	root int // index of the configured path the file was found under
	stat fileStat
	// keys are the policies this file supplies; dups the ones it defines
	// but an older file supplies.
	keys, dups []string
	// problems found at the last read.
	problems []Problem
}

// fileStat is what change detection compares.
type fileStat struct {
	size, mtime int64
	ino         uint64
}

func statOf(info fs.FileInfo) fileStat {
	st := fileStat{size: info.Size(), mtime: info.ModTime().UnixNano()}
	if sys, ok := info.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(sys.Ino)
	}
	return st
}

// NewSource returns a Source for opts. Nothing is read until Sync.
func NewSource(opts SourceOptions) *Source {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	paths := make([]string, len(opts.Paths))
	for i, p := range opts.Paths {
		paths[i] = filepath.Clean(p)
	}
	return &Source{
		set: opts.Set, paths: paths, log: opts.Logger,
		files:    make(map[string]*fileState),
		supplier: make(map[string]string),
	}
}

// Sync finds the policy files under the configured paths, reads those that
// are new or changed, and applies what changed to the set: new and edited
// documents are applied, documents gone from a readable file and removed
// files are deleted. It returns the problems of every file and policy of
// the source (see Problems).
func (s *Source) Sync() []Problem {
	s.scan()
	return s.Problems()
}

// scan walks the configured paths and reads every new or changed file.
func (s *Source) scan() {
	found := make(map[string]bool, len(s.files))
	var reads []fileRead
	s.rootProblems = nil
	for root, p := range s.paths {
		files, err := Files(p)
		if err != nil {
			// A missing or unreadable root keeps what it supplied.
			msg := err.Error()
			if pe := (*fs.PathError)(nil); errors.As(err, &pe) && pe.Path == p {
				msg = pe.Err.Error()
			}
			s.rootProblems = append(s.rootProblems, Problem{File: p, Message: msg})
			for path, f := range s.files {
				if f.root == root {
					found[path] = true
				}
			}
			continue
		}
		for _, path := range files {
			if found[path] {
				continue // reachable from an earlier root
			}
			found[path] = true
			if st, ok := s.changed(path, root); ok {
				reads = append(reads, fileRead{path: path, root: root, stat: st})
			}
		}
	}
	s.readAll(reads)
	for path := range s.files {
		if !found[path] {
			s.remove(path)
		}
	}
	for _, p := range s.rootProblems {
		if s.supplies(p.File) {
			s.log.Error("policy path unreadable; keeping the policies it supplied", "path", p.File, "error", p.Message)
		} else {
			s.log.Error("policy path unreadable", "path", p.File, "error", p.Message)
		}
	}
	s.adoptOrphans()
}

// check reads path when it is new or its stat changed.
func (s *Source) check(path string, root int) {
	if st, ok := s.changed(path, root); ok {
		docs, err := ReadFile(path)
		s.apply(path, root, st, docs, err)
	}
}

// supplies reports whether the configured path root supplies a policy.
func (s *Source) supplies(root string) bool {
	for _, f := range s.files {
		if s.paths[f.root] == root && len(f.keys) > 0 {
			return true
		}
	}
	return false
}

// changed stats path and reports whether it must be read: it is new, or
// its size, modification time or inode changed.
func (s *Source) changed(path string, root int) (fileStat, bool) {
	info, err := os.Stat(path)
	if err != nil {
		if f := s.files[path]; f != nil {
			// Vanished between the walk and now: a removal shows next time.
			f.problems = []Problem{{File: path, Message: err.Error()}}
		}
		return fileStat{}, false
	}
	st := statOf(info)
	if f := s.files[path]; f != nil && f.stat == st && f.root == root {
		return st, false
	}
	return st, true
}

// A fileRead is a file to read and what reading it gave.
type fileRead struct {
	path string
	root int
	stat fileStat
	docs []Document
	err  error
}

// readBatch bounds how many files are read ahead of being applied.
const readBatch = 256

// readAll reads files in parallel (parsing YAML is most of the cost of a
// start with many files) and applies them in order, a batch at a time.
func (s *Source) readAll(reads []fileRead) {
	workers := runtime.GOMAXPROCS(0)
	for len(reads) > 0 {
		batch := reads[:min(readBatch, len(reads))]
		reads = reads[len(batch):]
		var next atomic.Int64
		var wg sync.WaitGroup
		for range min(workers, len(batch)) {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < len(batch); i = int(next.Add(1) - 1) {
					batch[i].docs, batch[i].err = ReadFile(batch[i].path)
				}
			})
		}
		wg.Wait()
		for i := range batch {
			r := &batch[i]
			s.apply(r.path, r.root, r.stat, r.docs, r.err)
			r.docs = nil
		}
	}
}

// apply applies the documents read from one file (or the error reading
// it).
func (s *Source) apply(path string, root int, st fileStat, docs []Document, err error) {
	f := s.files[path]
	if f == nil {
		f = &fileState{root: root}
		s.files[path] = f
	}
	f.stat, f.root, f.problems = st, root, nil
	if err != nil && len(docs) == 0 {
		s.fileProblem(f, path, err.Error())
		return
	}
	if len(docs) == 0 {
		if len(f.keys) > 0 {
			s.fileProblem(f, path, "no AuthPolicy document (empty or half-written)")
		}
		return
	}
	// Keep the policies of documents that cannot be attributed: the file
	// may be half written.
	keepOthers := err != nil
	if err != nil {
		f.problems = append(f.problems, Problem{File: path, Message: err.Error()})
	}
	var keys, dups []string
	for i := range docs {
		d := &docs[i]
		if errors.Is(d.Err, ErrNotAuthPolicy) {
			p := Problem{File: path, Object: d.Object(), Message: d.Err.Error(), Warning: true}
			f.problems = append(f.problems, p)
			s.log.Warn("policy file document skipped", "file", path, "object", p.Object, "reason", p.Message)
			continue
		}
		if d.Policy == nil || d.Policy.Name == "" {
			keepOthers = true
			f.problems = append(f.problems, problemsOf(path, d.Object(), d.Err)...)
			continue
		}
		key := d.Object()
		if !s.claim(key, path, root) {
			dups = append(dups, key)
			f.problems = append(f.problems, Problem{File: path, Object: key, Field: "metadata.name",
				Message: fmt.Sprintf("policy %s is also defined in %s, which comes first; this document is ignored", key, s.supplier[key])})
			continue
		}
		keys = append(keys, key)
		o := policyset.Origin{File: path, Root: root, Doc: d.Index}
		if d.Err != nil {
			s.set.Reject(d.Policy.Namespace, d.Policy.Name, d.Policy.Generation, o, d.Err)
		} else {
			s.set.ApplyFrom(d.Policy, o)
		}
	}
	for _, key := range f.keys {
		if slices.Contains(keys, key) || s.supplier[key] != path {
			continue
		}
		if keepOthers {
			keys = append(keys, key)
			continue
		}
		s.drop(key)
	}
	f.keys, f.dups = keys, dups
	for _, p := range f.problems {
		if !p.Warning {
			s.log.Error("policy file problem", "file", p.File, "line", p.Line, "object", p.Object, "field", p.Field, "error", p.Message)
		}
	}
}

func (s *Source) fileProblem(f *fileState, path, msg string) {
	f.problems = append(f.problems, Problem{File: path, Message: msg})
	if len(f.keys) > 0 {
		s.log.Error("policy file unreadable; keeping its last good policies", "file", path, "error", msg)
	} else {
		s.log.Error("policy file unreadable", "file", path, "error", msg)
	}
}

// claim makes path the supplier of key unless a file that comes before it
// supplies it; a file that comes after it loses key to its dups.
func (s *Source) claim(key, path string, root int) bool {
	cur, ok := s.supplier[key]
	if !ok || cur == path {
		s.supplier[key] = path
		return true
	}
	other := s.files[cur]
	if other.root < root || other.root == root && cur < path {
		return false
	}
	other.keys = slices.DeleteFunc(other.keys, func(k string) bool { return k == key })
	other.dups = append(other.dups, key)
	s.supplier[key] = path
	return true
}

// drop deletes a policy this source supplied.
func (s *Source) drop(key string) {
	path := s.supplier[key]
	delete(s.supplier, key)
	ns, name, _ := strings.Cut(key, "/")
	s.set.DeleteFrom(ns, name, policyset.Origin{File: path})
}

// remove forgets a removed file and deletes its policies.
func (s *Source) remove(path string) {
	f := s.files[path]
	delete(s.files, path)
	for _, key := range f.keys {
		if s.supplier[key] == path {
			s.drop(key)
		}
	}
}

// adoptOrphans re-reads the files that define a policy no file supplies
// any more, so that the next definition in file order takes over.
func (s *Source) adoptOrphans() {
	for {
		var again []string
		for path, f := range s.files {
			for _, key := range f.dups {
				if _, ok := s.supplier[key]; !ok {
					again = append(again, path)
					break
				}
			}
		}
		if len(again) == 0 {
			return
		}
		sort.Slice(again, func(i, j int) bool {
			a, b := s.files[again[i]], s.files[again[j]]
			return a.root < b.root || a.root == b.root && again[i] < again[j]
		})
		path := again[0]
		f := s.files[path]
		f.dups = nil // read re-derives them; this also ends the loop
		docs, err := ReadFile(path)
		s.apply(path, f.root, f.stat, docs, err)
	}
}

// Problems returns the problems of the source: those of its files at their
// last read, and the status of every policy it supplies that is not
// Accepted for a reason the files can fix (InvalidSpec, Conflict), with one
// problem per field for InvalidSpec. Key availability (SecretNotFound,
// JWKSUnavailable) is left to the caller.
func (s *Source) Problems() []Problem {
	paths := make([]string, 0, len(s.files))
	for path := range s.files {
		paths = append(paths, path)
	}
	sort.Slice(paths, func(i, j int) bool {
		a, b := s.files[paths[i]], s.files[paths[j]]
		return a.root < b.root || a.root == b.root && paths[i] < paths[j]
	})
	out := append([]Problem(nil), s.rootProblems...)
	for _, path := range paths {
		f := s.files[path]
		out = append(out, f.problems...)
		for _, key := range f.keys {
			ns, name, _ := strings.Cut(key, "/")
			st, ok := s.set.StatusFrom(ns, name, policyset.Origin{File: path})
			if !ok {
				continue
			}
			out = append(out, statusProblems(path, key, st)...)
		}
	}
	return out
}

func statusProblems(file, key string, st policyset.Status) []Problem {
	switch st.Reason {
	case v1alpha1.ReasonInvalidSpec:
		if st.Err != nil {
			return problemsOf(file, key, st.Err)
		}
		return []Problem{{File: file, Object: key, Message: st.Message}}
	case v1alpha1.ReasonConflict:
		return []Problem{{File: file, Object: key, Field: "spec", Message: "Conflict: " + st.Message}}
	}
	return nil
}

// Keys returns the policies the source supplies.
func (s *Source) Keys() []string {
	out := make([]string, 0, len(s.supplier))
	for key := range s.supplier {
		out = append(out, key)
	}
	sort.Strings(out)
	return out
}

// rootOf returns the index of the configured path that path is under.
func (s *Source) rootOf(path string) (int, bool) {
	for i, p := range s.paths {
		if path == p {
			return i, true
		}
		if rel, err := filepath.Rel(p, path); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			return i, true
		}
	}
	return 0, false
}
