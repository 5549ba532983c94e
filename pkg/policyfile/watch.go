package policyfile

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchOptions configures Source.Watch.
type WatchOptions struct {
	// Stable is how long a changed file must stay unchanged before it is
	// read, so that a file being written is not read half-written.
	// Default 200ms.
	Stable time.Duration
	// PollInterval is how often every file is stat-checked, in case a
	// notification was missed (or the file system sends none). Default
	// 30s; 2s when notifications are unavailable.
	PollInterval time.Duration
}

// Watch follows changes to the policy files until ctx is done, applying
// each changed file once it has been stable for opts.Stable. Directories
// are watched with filesystem notifications (fsnotify), which also see the
// symlink swap with which Kubernetes updates a mounted ConfigMap; a
// stat-only scan every PollInterval catches what notifications miss.
// Unchanged files are never read. Call Sync first: Watch starts with a
// stat-only scan for what changed since.
func (s *Source) Watch(ctx context.Context, opts WatchOptions) {
	if opts.Stable <= 0 {
		opts.Stable = 200 * time.Millisecond
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("policy files: no change notifications; polling", "error", err)
		w = nil
		if opts.PollInterval <= 0 {
			opts.PollInterval = 2 * time.Second
		}
	} else {
		defer w.Close()
		s.watchDirs(w)
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 30 * time.Second
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}

	pending := make(map[string]pendingPath)
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	poll := time.NewTicker(opts.PollInterval)
	defer poll.Stop()
	// pend makes path wait until it has been stable for opts.Stable; seeing
	// it again unchanged does not restart the wait.
	pend := func(path string) {
		st := statPath(path)
		p, ok := pending[path]
		if ok && p.stat == st {
			return
		}
		if len(pending) == 0 {
			debounce.Reset(opts.Stable)
		}
		pending[path] = pendingPath{at: time.Now(), stat: st}
	}
	// What changed between Sync and the watches being in place.
	for _, path := range s.changedPaths() {
		pend(path)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			s.noteEvent(w, ev, pend)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// An overflow loses events: look at everything.
			s.log.Warn("policy files: change notifications failed; rescanning", "error", err)
			for _, path := range s.changedPaths() {
				pend(path)
			}
			if w != nil {
				s.watchDirs(w)
			}
		case <-poll.C:
			for _, path := range s.changedPaths() {
				pend(path)
			}
		case <-debounce.C:
			now := time.Now()
			var next time.Duration
			synced := false
			for path, p := range pending {
				wait := opts.Stable - now.Sub(p.at)
				if wait <= 0 {
					if st := statPath(path); st != p.stat {
						// Still changing: wait again.
						pending[path] = pendingPath{at: now, stat: st}
						wait = opts.Stable
					} else {
						delete(pending, path)
						s.syncPath(path)
						synced = true
						continue
					}
				}
				if next == 0 || wait < next {
					next = wait
				}
			}
			if synced {
				s.adoptOrphans()
			}
			if len(pending) > 0 {
				debounce.Reset(next)
			}
		}
	}
}

// pendingPath is a path waiting to be stable.
type pendingPath struct {
	at   time.Time
	stat pathStat
}

// pathStat is what stability compares: the stat of a path, or its absence.
type pathStat struct {
	fileStat
	exists bool
	dir    bool
}

func statPath(path string) pathStat {
	info, err := os.Stat(path)
	if err != nil {
		return pathStat{}
	}
	return pathStat{fileStat: statOf(info), exists: true, dir: info.IsDir()}
}

// noteEvent turns a notification into the path to look at again: the file
// itself, or its directory when the name is hidden (a ConfigMap's ..data
// swap changes every file behind its links) or is a directory.
func (s *Source) noteEvent(w *fsnotify.Watcher, ev fsnotify.Event, pend func(string)) {
	name := filepath.Clean(ev.Name)
	base := filepath.Base(name)
	if strings.HasPrefix(base, ".") {
		pend(filepath.Dir(name))
		return
	}
	if ev.Has(fsnotify.Create) {
		if info, err := os.Stat(name); err == nil && info.IsDir() {
			s.watchTree(w, name)
			pend(name)
			return
		}
	}
	switch {
	case isPolicyFileName(base) || s.isRoot(name):
		pend(name)
	case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
		pend(name) // perhaps a directory of policy files
	}
}

// syncPath looks at one path again: a file is read if its stat changed
// (or dropped if gone); a directory is walked, and files gone from it are
// dropped.
func (s *Source) syncPath(path string) {
	info, err := os.Stat(path)
	if err != nil {
		for f := range s.files {
			if f == path || strings.HasPrefix(f, path+string(filepath.Separator)) {
				s.remove(f)
			}
		}
		return
	}
	if !info.IsDir() {
		if root, ok := s.rootOf(path); ok {
			s.check(path, root)
		}
		return
	}
	// A file root whose directory changed (its ..data link swapped).
	for root, p := range s.paths {
		if filepath.Dir(p) == path && !s.isDirRoot(root) {
			s.syncFileRoot(p, root)
		}
	}
	root, ok := s.rootOf(path)
	if !ok || !s.isDirRoot(root) {
		return
	}
	files, err := Files(path)
	if err != nil {
		return
	}
	found := make(map[string]bool, len(files))
	for _, f := range files {
		found[f] = true
		s.check(f, root)
	}
	for f := range s.files {
		if strings.HasPrefix(f, path+string(filepath.Separator)) && !found[f] {
			s.remove(f)
		}
	}
}

func (s *Source) syncFileRoot(p string, root int) {
	if _, err := os.Stat(p); err != nil {
		if _, known := s.files[p]; known {
			s.remove(p)
		}
		return
	}
	s.check(p, root)
}

// changedPaths stat-checks every file and returns those that are new,
// changed or gone. It never reads a file.
func (s *Source) changedPaths() []string {
	var out []string
	found := make(map[string]bool, len(s.files))
	for root, p := range s.paths {
		files, err := Files(p)
		if err != nil {
			continue
		}
		for _, path := range files {
			found[path] = true
			f := s.files[path]
			if f == nil || f.root != root {
				out = append(out, path)
				continue
			}
			if info, err := os.Stat(path); err != nil || statOf(info) != f.stat {
				out = append(out, path)
			}
		}
	}
	for path := range s.files {
		if !found[path] {
			out = append(out, path)
		}
	}
	return out
}

// watchDirs watches every directory of the configured paths: a directory
// and its non-hidden subdirectories; for a file, its directory.
func (s *Source) watchDirs(w *fsnotify.Watcher) {
	for _, p := range s.paths {
		info, err := os.Stat(p)
		if err != nil {
			continue
		}
		if info.IsDir() {
			s.watchTree(w, p)
			continue
		}
		if err := w.Add(filepath.Dir(p)); err != nil {
			s.log.Warn("policy files: cannot watch directory", "dir", filepath.Dir(p), "error", err)
		}
	}
}

func (s *Source) watchTree(w *fsnotify.Watcher, dir string) {
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if err := w.Add(path); err != nil {
			s.log.Warn("policy files: cannot watch directory", "dir", path, "error", err)
		}
		return nil
	})
}

func (s *Source) isRoot(path string) bool {
	for _, p := range s.paths {
		if filepath.Clean(p) == path {
			return true
		}
	}
	return false
}

func (s *Source) isDirRoot(root int) bool {
	info, err := os.Stat(s.paths[root])
	return err == nil && info.IsDir()
}
