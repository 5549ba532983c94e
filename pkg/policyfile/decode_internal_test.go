package policyfile

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// FuzzDocumentStarts checks documentStarts against the document reader
// it mirrors: as many chunks, each starting with the line it names.
func FuzzDocumentStarts(f *testing.F) {
	for _, s := range []string{
		"a: 1\n",
		"# a comment\n---\nkind: a\n---\n---\nkind: b\n",
		"---\n---\n",
		"--- # doc\na: 1\n---\n\n\nb: 2",
		"a: 1\r\n---\r\nb: 2\r\n",
		"\n---\n",
		"---a\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		starts := documentStarts(data)
		lines := bytes.SplitAfter(data, []byte("\n"))
		reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for i := 0; ; i++ {
			raw, err := reader.Read()
			if errors.Is(err, io.EOF) {
				if i != len(starts) {
					t.Fatalf("%d chunks, documentStarts found %d: %v", i, len(starts), starts)
				}
				return
			}
			if err != nil {
				return // a separator the reader refuses: Parse reports it
			}
			if i >= len(starts) {
				t.Fatalf("chunk %d %q beyond documentStarts %v", i, raw, starts)
			}
			first, _, _ := bytes.Cut(raw, []byte("\n"))
			want := bytes.TrimRight(lines[starts[i]-1], "\r\n")
			if !bytes.Equal(bytes.TrimRight(first, "\r"), want) {
				t.Fatalf("chunk %d starts %q, line %d is %q", i, first, starts[i], want)
			}
		}
	})
}
