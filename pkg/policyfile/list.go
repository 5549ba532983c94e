package policyfile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	yamlv3 "go.yaml.in/yaml/v3"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
)

// A chunk is the text of one document of a file, with the line of the file
// it starts on: a YAML document, or one item of a List.
type chunk struct {
	raw   []byte
	start int
	// err says why the document cannot be read at all (a List without a
	// list of items); raw is then nil.
	err error
}

// chunks splits data into its documents, in order, without the empty
// ones: the documents of a multi-document YAML (or JSON) stream, each List
// (what `kubectl get -o yaml` writes: apiVersion v1, kind List) replaced
// by its items. The error is set when the stream cannot be split further;
// the chunks before it are returned.
func chunks(data []byte) ([]chunk, error) {
	// A buffer the size of the data (64 KiB at most): 10,000 small files
	// must not cost 10,000 buffers of 64 KiB.
	reader := utilyaml.NewYAMLReader(bufio.NewReaderSize(bytes.NewReader(data), min(len(data)+16, 64<<10)))
	starts := documentStarts(data)
	var out []chunk
	for n := 0; ; n++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("document %d: %w", len(out)+1, err)
		}
		if isEmptyDocument(raw) {
			continue
		}
		start := 0
		if n < len(starts) {
			start = starts[n]
		}
		if items, ok := listItems(raw, start); ok {
			out = append(out, items...)
			continue
		}
		out = append(out, chunk{raw: raw, start: start})
	}
}

// isList reports whether apiVersion and kind name a list of objects:
// kubectl's v1 List, or an AuthPolicyList.
func isList(apiVersion, kind string) bool {
	return apiVersion == "v1" && kind == "List" ||
		apiVersion == v1alpha1.GroupVersion.String() && kind == "AuthPolicyList"
}

// listItems returns the items of a List document, each a chunk of its own
// that starts on the item's line, so that its mistakes are reported on
// the lines of the file; ok is false when raw is not a List. An item is
// its own text: unindented for a block list, cut out of a flow list (a
// List written as JSON). Should that text not read as the item (a flow
// list with a "]" in a comment, say), the item written as JSON on one line
// stands for it, and its mistakes are all reported on its first line.
func listItems(raw []byte, start int) (items []chunk, ok bool) {
	// Most documents are AuthPolicies: skip the parse unless the words
	// are there.
	if !bytes.Contains(raw, []byte("List")) || !bytes.Contains(raw, []byte("items")) {
		return nil, false
	}
	var doc yamlv3.Node
	if yamlv3.Unmarshal(raw, &doc) != nil || len(doc.Content) != 1 || doc.Content[0].Kind != yamlv3.MappingNode {
		return nil, false // not a List, or one that decode reports on
	}
	root := doc.Content[0]
	var apiVersion, kind string
	var list, after *yamlv3.Node // after: the field after items, if any
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "apiVersion":
			apiVersion = v.Value
		case "kind":
			kind = v.Value
		case "items":
			list = v
			if i+2 < len(root.Content) {
				after = root.Content[i+2]
			}
		}
	}
	if !isList(apiVersion, kind) {
		return nil, false
	}
	if list == nil || list.Kind != yamlv3.SequenceNode {
		if list != nil && list.Tag == "!!null" {
			return nil, true // "items: null", as an empty list is sometimes written
		}
		return []chunk{{start: start, err: fmt.Errorf("%s %s: items must be a list of objects", apiVersion, kind)}}, true
	}
	text := itemText{raw: raw, lines: bytes.SplitAfter(raw, []byte("\n"))}
	items = make([]chunk, 0, len(list.Content))
	for i, item := range list.Content {
		next := after
		if i+1 < len(list.Content) {
			next = list.Content[i+1]
		}
		c := chunk{start: start + item.Line - 1}
		if list.Style&yamlv3.FlowStyle != 0 {
			c.raw = text.flow(item, next, i+1 == len(list.Content))
		} else {
			c.raw = text.block(item, next)
		}
		if !reads(c.raw, item) {
			c.raw, c.err = oneLine(item)
			if c.err != nil {
				c.err = fmt.Errorf("items[%d]: %w", i, c.err)
			}
		}
		items = append(items, c)
	}
	return items, true
}

// oneLine returns item as JSON on one line: its mistakes are reported on
// the line the chunk starts on.
func oneLine(item *yamlv3.Node) ([]byte, error) {
	var v any
	if err := item.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// reads reports whether text is one YAML node of the kind of item.
func reads(text []byte, item *yamlv3.Node) bool {
	var n yamlv3.Node
	return text != nil && yamlv3.Unmarshal(text, &n) == nil && len(n.Content) == 1 && n.Content[0].Kind == item.Kind
}

// itemText cuts the text of list items out of a document.
type itemText struct {
	raw   []byte
	lines [][]byte
}

// offset returns the byte offset of a node's position, or -1.
func (t itemText) offset(n *yamlv3.Node) int {
	if n.Line < 1 || n.Line > len(t.lines) || n.Column < 1 || n.Column-1 > len(t.lines[n.Line-1]) {
		return -1
	}
	off := 0
	for _, l := range t.lines[:n.Line-1] {
		off += len(l)
	}
	return off + n.Column - 1
}

// block returns the lines of a block list item, from its line up to the
// line of next (the next item, or the field after the list; nil for the
// end of the document), unindented.
func (t itemText) block(item, next *yamlv3.Node) []byte {
	last := len(t.lines)
	if next != nil && next.Line-1 < last {
		last = next.Line - 1
	}
	return unindent(t.lines[item.Line-1:max(last, item.Line)], item.Column-1)
}

// flow returns the text of a flow list item, from its position up to
// next's, without the "," (and, after the last item, the "]") between
// them. It starts where the item does, on the item's line.
func (t itemText) flow(item, next *yamlv3.Node, last bool) []byte {
	from := t.offset(item)
	to := len(t.raw)
	if next != nil {
		to = t.offset(next)
	}
	if from < 0 || to < from {
		return nil
	}
	s := t.raw[from:to]
	if last {
		i := bytes.LastIndexByte(s, ']')
		if i < 0 {
			return nil
		}
		s = s[:i]
	}
	s = bytes.TrimRight(s, " \t\r\n")
	s = bytes.TrimRight(bytes.TrimSuffix(s, []byte(",")), " \t\r\n")
	return s
}

// unindent returns the lines of a block list item, whose first line has
// the item's text from byte indent (after "- "), without that indentation,
// and without the blank, comment and "-" lines that end it (the "-" of the
// next item when it is on a line of its own).
func unindent(lines [][]byte, indent int) []byte {
	for len(lines) > 1 {
		t := bytes.TrimSpace(lines[len(lines)-1])
		if len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("-")) {
			break
		}
		lines = lines[:len(lines)-1]
	}
	var b bytes.Buffer
	for i, l := range lines {
		switch n := len(l) - len(bytes.TrimLeft(l, " ")); {
		case i == 0 && len(l) >= indent:
			l = l[indent:]
		case n >= indent:
			l = l[indent:]
		default:
			l = l[n:] // a blank or comment line, less indented
		}
		b.Write(l)
	}
	return b.Bytes()
}
