package policyfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/internal/suggest"
	"github.com/tollgate-dev/tollgate/pkg/policy/compiler"
)

// A FieldError is one mistake in a document, at a field path.
type FieldError struct {
	// Field is the path as the compiler writes it (spec.limits[0].requests,
	// spec.jwt.forwardClaims[x-user-id]); empty for the whole document.
	Field string
	// Line is the line of the file the field is on, from 1; 0 when unknown.
	Line    int
	Message string
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// A DecodeError lists every mistake that kept one document from decoding
// as an AuthPolicy (YAML syntax, duplicate and unknown fields, values of
// the wrong type), then what the compiler finds in the rest of the
// document, so that one run reports them all.
type DecodeError struct {
	Errs []FieldError
}

func (e *DecodeError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, fe := range e.Errs {
		msgs[i] = fe.Error()
	}
	return strings.Join(msgs, "; ")
}

// decode converts one YAML document, whose first line is line start of its
// file, strictly. A document that does not decode is diagnosed: every
// mistake is reported, each with its field path and line.
func decode(raw []byte, start int) (*v1alpha1.AuthPolicy, error) {
	// The common case costs one YAML parse; the diagnosis, a second one.
	js, err := yaml.YAMLToJSONStrict(raw)
	if err == nil {
		if err := checkKind(js); err != nil {
			return nil, err
		}
		ap := &v1alpha1.AuthPolicy{}
		strict, err := sigsjson.UnmarshalStrict(js, ap, sigsjson.DisallowUnknownFields)
		if err == nil && len(strict) == 0 && ap.Name != "" {
			return ap, nil
		}
	}
	return diagnose(raw, start)
}

// checkKind returns ErrNotAuthPolicy for an object of another API group,
// and an error for anything else that is not a tollgate AuthPolicy.
func checkKind(js []byte) error {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &meta); err != nil {
		return fmt.Errorf("not an object: %w", err)
	}
	if meta.Kind == "AuthPolicy" && meta.APIVersion == v1alpha1.GroupVersion.String() {
		return nil
	}
	if group, _, _ := strings.Cut(meta.APIVersion, "/"); meta.APIVersion != "" && meta.Kind != "" && group != v1alpha1.GroupVersion.Group {
		return fmt.Errorf("%w: %s %s", ErrNotAuthPolicy, meta.APIVersion, meta.Kind)
	}
	return fmt.Errorf("unsupported object %q %q: want apiVersion %q, kind \"AuthPolicy\"", meta.APIVersion, meta.Kind, v1alpha1.GroupVersion.String())
}

// diagnosis collects the mistakes of one document.
type diagnosis struct {
	lines lineIndex
	errs  []FieldError
}

func (d *diagnosis) add(field, msg string) {
	d.errs = append(d.errs, FieldError{Field: field, Line: d.lines.line(field), Message: msg})
}

// diagnose reports every mistake of a document that did not decode. The
// policy returned holds what could be decoded (its name, for a start).
func diagnose(raw []byte, start int) (*v1alpha1.AuthPolicy, error) {
	d := &diagnosis{lines: lineIndex{start: start, lines: map[string]int{}}}
	// The decoder's own parser says what is wrong with the syntax, and
	// its line is nearer the mistake than yaml.v3's (which names the line
	// of the enclosing block). Duplicate fields are left to the index.
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, &DecodeError{Errs: []FieldError{syntaxError(err, start)}}
	}
	// yaml.v3 knows the line of every node; should it refuse what the
	// decoder's parser took, only the lines are lost.
	var root yamlv3.Node
	if yamlv3.Unmarshal(raw, &root) == nil {
		d.index(&root, nil)
	}
	if err := checkKind(js); err != nil {
		return nil, err
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, &DecodeError{Errs: []FieldError{{Line: start, Message: "not an object: " + err.Error()}}}
	}
	clean, _ := d.value("", reflect.TypeFor[v1alpha1.AuthPolicy](), v)
	decodeErrs := len(d.errs)

	// What is left decodes: the document keeps its name, and the compiler
	// reports the mistakes of the rest.
	ap := &v1alpha1.AuthPolicy{}
	if b, err := json.Marshal(clean); err == nil {
		_ = json.Unmarshal(b, ap)
	}
	if decodeErrs == 0 {
		// The walk mirrors the decoder; should they ever disagree, the
		// decoder's word is still reported.
		strict, err := sigsjson.UnmarshalStrict(js, &v1alpha1.AuthPolicy{}, sigsjson.DisallowUnknownFields)
		for _, e := range append(strict, err) {
			if e != nil {
				d.errs = append(d.errs, FieldError{Line: start, Message: e.Error()})
			}
		}
	}
	if ap.Name == "" {
		d.add("metadata.name", "Required value")
	}
	d.compile(ap)
	return ap, &DecodeError{Errs: d.errs}
}

// yamlLine finds the line in a YAML syntax error, which has no type of
// its own: "yaml: line 3: mapping values are not allowed in this context".
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func syntaxError(err error, start int) FieldError {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return FieldError{Line: start + n - 1, Message: "invalid YAML: " + m[2]}
	}
	return FieldError{Line: start, Message: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
}

// compile adds what the compiler finds wrong with ap, except at fields
// already reported (a value dropped for its type is no second mistake).
func (d *diagnosis) compile(ap *v1alpha1.AuthPolicy) {
	reported := make([]string, len(d.errs))
	for i, fe := range d.errs {
		reported[i] = fe.Field
	}
	_, err := compiler.Compile(ap)
	for _, fe := range compiler.FieldErrors(err) {
		if slices.ContainsFunc(reported, func(r string) bool { return related(r, fe.Field) }) {
			continue
		}
		d.add(fe.Field, fe.ErrorBody())
	}
}

// related reports whether one field path is the other or inside it.
func related(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	return a == "" || b == a || strings.HasPrefix(b, a) && (b[len(a)] == '.' || b[len(a)] == '[')
}

// value checks v, decoded from JSON, against the Go type t the way
// encoding/json would decode it (field names case-sensitive, unknown
// fields refused), records each mistake at its path, and returns v
// without the values that do not fit (ok false when v itself does not).
func (d *diagnosis) value(path string, t reflect.Type, v any) (clean any, ok bool) {
	if v == nil {
		return nil, true // null leaves the zero value
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return d.custom(path, t, v)
	}
	switch t.Kind() {
	case reflect.Pointer:
		return d.value(path, t.Elem(), v)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return d.mismatch(path, t, v)
		}
		fields := jsonFields(t)
		out := make(map[string]any, len(m))
		for _, k := range sortedKeys(m) {
			ft, known := fields[k]
			if !known {
				d.add(join(path, k), unknownField(k, fields))
				continue
			}
			if c, ok := d.value(join(path, k), ft, m[k]); ok {
				out[k] = c
			}
		}
		return out, true
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return d.mismatch(path, t, v)
		}
		out := make(map[string]any, len(m))
		for _, k := range sortedKeys(m) {
			if c, ok := d.value(path+"["+k+"]", t.Elem(), m[k]); ok {
				out[k] = c
			}
		}
		return out, true
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return d.custom(path, t, v) // []byte: base64
		}
		list, ok := v.([]any)
		if !ok {
			return d.mismatch(path, t, v)
		}
		out := make([]any, len(list))
		for i, e := range list {
			// A dropped element stays as null, so that later indexes
			// still name the same element.
			out[i], _ = d.value(path+"["+strconv.Itoa(i)+"]", t.Elem(), e)
		}
		return out, true
	case reflect.String:
		if _, ok := v.(string); ok {
			return v, true
		}
	case reflect.Bool:
		if _, ok := v.(bool); ok {
			return v, true
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n, ok := v.(json.Number); ok {
			if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err == nil {
				return v, true
			}
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n, ok := v.(json.Number); ok {
			if _, err := strconv.ParseUint(string(n), 10, t.Bits()); err == nil {
				return v, true
			}
		}
	case reflect.Float32, reflect.Float64:
		if n, ok := v.(json.Number); ok {
			if _, err := strconv.ParseFloat(string(n), t.Bits()); err == nil {
				return v, true
			}
		}
	case reflect.Interface:
		return v, true
	default:
		return d.custom(path, t, v)
	}
	return d.mismatch(path, t, v)
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// custom checks a value whose type decodes itself (a timestamp, a
// quantity) by decoding it.
func (d *diagnosis) custom(path string, t reflect.Type, v any) (any, bool) {
	b, err := json.Marshal(v)
	if err == nil {
		err = json.Unmarshal(b, reflect.New(t).Interface())
	}
	if err != nil {
		d.add(path, fmt.Sprintf("invalid value %s: %v", describe(v), err))
		return nil, false
	}
	return v, true
}

func (d *diagnosis) mismatch(path string, t reflect.Type, v any) (any, bool) {
	d.add(path, fmt.Sprintf("must be %s, not %s", want(t), describe(v)))
	return nil, false
}

// want says what a value of type t is written as.
func want(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object (field: value)"
	}
	return "a " + t.Kind().String()
}

// describe says what a JSON value is, quoting a short scalar.
func describe(v any) string {
	short := func(s string) string {
		if len(s) > 40 {
			s = s[:37] + "..."
		}
		return s
	}
	switch v := v.(type) {
	case string:
		return "the string " + strconv.Quote(short(v))
	case json.Number:
		return "the number " + short(string(v))
	case bool:
		return strconv.FormatBool(v)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%v", v)
}

// unknownField says that name is not a field here, and which one was
// likely meant.
func unknownField(name string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	slices.Sort(names)
	if s := suggest.Nearest(name, names); s != "" {
		return fmt.Sprintf("unknown field %q (did you mean %q?)", name, s)
	}
	if len(names) <= 12 {
		return fmt.Sprintf("unknown field %q (fields here: %s)", name, strings.Join(names, ", "))
	}
	return fmt.Sprintf("unknown field %q", name)
}

// jsonFields returns the JSON names of t's fields and their types, with
// embedded structs' fields inlined, as encoding/json sees them.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for n, typ := range jsonFields(ft) {
					if _, ok := out[n]; !ok {
						out[n] = typ
					}
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// A lineIndex maps the fields of one document to lines of its file.
type lineIndex struct {
	start int            // the document's first line
	lines map[string]int // by segments joined with "\x00"
}

// line returns the line of field, or of its nearest ancestor written in
// the document, or the document's first line.
func (x lineIndex) line(field string) int {
	segs := splitField(field)
	for ; len(segs) > 0; segs = segs[:len(segs)-1] {
		if l, ok := x.lines[strings.Join(segs, "\x00")]; ok {
			return l
		}
	}
	return x.start
}

// splitField splits spec.rules[0].owner or spec.jwt.forwardClaims[x-id]
// into its names and indexes.
func splitField(field string) []string {
	var segs []string
	for field != "" {
		switch {
		case field[0] == '.':
			field = field[1:]
		case field[0] == '[':
			end := strings.IndexByte(field, ']')
			if end < 0 {
				return append(segs, field[1:])
			}
			segs = append(segs, field[1:end])
			field = field[end+1:]
		default:
			end := strings.IndexAny(field, ".[")
			if end < 0 {
				end = len(field)
			}
			segs = append(segs, field[:end])
			field = field[end:]
		}
	}
	return segs
}

// index records the line of every field and list element under n, and
// reports duplicate fields.
func (d *diagnosis) index(n *yamlv3.Node, segs []string) {
	line := func(n *yamlv3.Node) int { return d.lines.start + n.Line - 1 }
	switch n.Kind {
	case yamlv3.DocumentNode:
		for _, c := range n.Content {
			d.index(c, segs)
		}
	case yamlv3.MappingNode:
		first := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := append(slices.Clip(segs), k.Value)
			if l, dup := first[k.Value]; dup && k.Value != "<<" {
				d.errs = append(d.errs, FieldError{Field: renderField(p), Line: line(k),
					Message: fmt.Sprintf("duplicate field %q (first on line %d)", k.Value, l)})
				continue
			}
			first[k.Value] = line(k)
			d.lines.lines[strings.Join(p, "\x00")] = line(k)
			d.index(v, p)
		}
	case yamlv3.SequenceNode:
		for i, c := range n.Content {
			p := append(slices.Clip(segs), strconv.Itoa(i))
			d.lines.lines[strings.Join(p, "\x00")] = line(c)
			d.index(c, p)
		}
	}
}

// renderField writes segments as a field path; numbers are list indexes.
func renderField(segs []string) string {
	var b strings.Builder
	for i, s := range segs {
		if _, err := strconv.Atoi(s); err == nil && i > 0 {
			b.WriteString("[" + s + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}

// documentStarts returns the first line of each chunk of data that the
// YAML document reader returns, in order. It splits as the reader does: a
// separator line ("---", optionally followed by a comment) ends a chunk,
// and starts one when none is open.
func documentStarts(data []byte) []int {
	var starts []int
	open := false
	for n, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) == 0 {
			break
		}
		if open && bytes.HasPrefix(line, []byte("---")) {
			open = false
			continue
		}
		if !open {
			starts = append(starts, n+1)
			open = true
		}
	}
	return starts
}

// AddLines fills in the line of each problem that names a field of an
// object but no line (the compiler's findings, conflicts), from the file
// as it is now: the line of the field, or of its nearest ancestor written
// in the document. An object defined twice in one file gets no line.
func AddLines(problems []Problem) []Problem {
	files := map[string]map[string]*lineIndex{} // file → object → index
	for i := range problems {
		p := &problems[i]
		if p.Line != 0 || p.Field == "" || p.File == "" || p.Object == "" {
			continue
		}
		objects, ok := files[p.File]
		if !ok {
			objects = indexFile(p.File)
			files[p.File] = objects
		}
		if x := objects[p.Object]; x != nil {
			p.Line = x.line(p.Field)
		}
	}
	return problems
}

// indexFile returns the line index of each named object of a policy file
// (nil for an object it defines twice).
func indexFile(path string) map[string]*lineIndex {
	data, err := os.ReadFile(path)
	if err != nil || len(data) > MaxFileSize {
		return nil
	}
	out := map[string]*lineIndex{}
	cs, _ := chunks(data)
	for _, c := range cs {
		var root yamlv3.Node
		var meta struct {
			Metadata struct{ Name, Namespace string }
		}
		if c.err != nil || yamlv3.Unmarshal(c.raw, &root) != nil || root.Decode(&meta) != nil || meta.Metadata.Name == "" {
			continue
		}
		ns := meta.Metadata.Namespace
		if ns == "" {
			ns = "default"
		}
		key := ns + "/" + meta.Metadata.Name
		if _, twice := out[key]; twice {
			out[key] = nil
			continue
		}
		d := diagnosis{lines: lineIndex{start: c.start, lines: map[string]int{}}}
		d.index(&root, nil)
		out[key] = &d.lines
	}
	return out
}
