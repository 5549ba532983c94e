// Package policyfile reads AuthPolicy objects from YAML or JSON files:
// multi-document (a v1 List, as kubectl get -o yaml writes, stands for its
// items), strict (unknown and duplicate fields are errors), with a size
// cap, from files or directory trees.
package policyfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
)

// MaxFileSize is the largest policy file read; larger files are refused.
const MaxFileSize = 5 << 20

// ErrTooLarge reports a file over MaxFileSize.
var ErrTooLarge = errors.New("policyfile: file is larger than 5 MiB")

// ErrNotAuthPolicy marks a document of another API group (a ConfigMap, a
// Kustomization, another project's AuthPolicy): it is skipped with a
// warning, not an error.
var ErrNotAuthPolicy = errors.New("not a tollgate AuthPolicy; skipped")

// A Document is one AuthPolicy read from a file, or the error that kept it
// from being read.
type Document struct {
	File string
	// Index is the document's position in its file, from 0.
	Index  int
	Policy *v1alpha1.AuthPolicy
	// Err is set when the document could not be decoded; Policy is then nil
	// or holds what could be read of its metadata.
	Err error
}

// Object names the document for messages: "namespace/name", or
// "document N" when it has no name.
func (d *Document) Object() string {
	if d.Policy != nil && d.Policy.Name != "" {
		ns := d.Policy.Namespace
		if ns == "" {
			ns = "default"
		}
		return ns + "/" + d.Policy.Name
	}
	return fmt.Sprintf("document %d", d.Index+1)
}

// Files expands paths into the policy files they name: a file is taken as
// is; a directory contributes its *.yaml, *.yml and *.json files, walked
// recursively in lexical order, skipping hidden entries (such as the
// ..data links of a mounted ConfigMap) and kustomization files.
func Files(paths ...string) ([]string, error) {
	var out []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("policy path: %w", err)
		}
		if !info.IsDir() {
			if !info.Mode().IsRegular() {
				return nil, fmt.Errorf("policy path %s: not a regular file", p)
			}
			out = append(out, p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if path != p && strings.HasPrefix(name, ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() || !isPolicyFileName(name) {
				return nil
			}
			// Only regular files, directly or through a link: reading a
			// FIFO or a device could block or never end.
			if d.Type()&fs.ModeSymlink != 0 {
				if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
					return nil
				}
			} else if !d.Type().IsRegular() {
				return nil
			}
			found = append(found, path)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("policy directory %s: %w", p, err)
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

func isPolicyFileName(name string) bool {
	switch strings.ToLower(name) {
	case "kustomization.yaml", "kustomization.yml", "kustomization":
		return false
	}
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml" || ext == ".json"
}

// ReadFile reads every document of a file. The error is for the file as a
// whole (missing, unreadable, too large); problems of one document are in
// that Document's Err.
func ReadFile(path string) ([]Document, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: %w", path, ErrTooLarge)
	}
	docs, err := Parse(data)
	for i := range docs {
		docs[i].File = path
	}
	if err != nil {
		return docs, fmt.Errorf("%s: %w", path, err)
	}
	return docs, nil
}

// Parse decodes the AuthPolicy documents of a multi-document YAML (or JSON)
// stream; a List of objects (kubectl get -o yaml) stands for its items,
// each a document of its own. Empty documents are skipped. The error is
// set when the stream itself cannot be split into documents.
func Parse(data []byte) ([]Document, error) {
	if len(data) > MaxFileSize {
		return nil, ErrTooLarge
	}
	cs, err := chunks(data)
	docs := make([]Document, 0, len(cs))
	for i, c := range cs {
		if c.err != nil {
			docs = append(docs, Document{Index: i, Err: c.err})
			continue
		}
		ap, err := decode(c.raw, c.start)
		docs = append(docs, Document{Index: i, Policy: ap, Err: err})
	}
	return docs, err
}

func isEmptyDocument(raw []byte) bool {
	for _, line := range bytes.Split(raw, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && !bytes.Equal(line, []byte("---")) {
			return false
		}
	}
	return true
}
