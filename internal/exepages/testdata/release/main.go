// Command release calls exepages.Release, then runs code that reads the
// executable's read-only data (type descriptors, itabs, string tables,
// function tables) through the paths a server takes: formatting,
// reflection, maps, interfaces, JSON, sorting, panics and their recovery,
// and stack traces. It prints what Release reported and exits 0; a page
// that Release should have kept shows up as a crash.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"

	"github.com/tollgate-dev/tollgate/internal/exepages"
)

type record struct {
	Name  string            `json:"name"`
	Count int               `json:"count"`
	Tags  map[string]string `json:"tags"`
	Next  *record           `json:"next,omitempty"`
}

type shape interface{ area() float64 }

type square struct{ side float64 }
type circle struct{ r float64 }

func (s square) area() float64 { return s.side * s.side }
func (c circle) area() float64 { return 3.14159 * c.r * c.r }

func main() {
	r, err := exepages.Release()
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
	fmt.Printf("released=%d skipped=%q\n", r.Bytes, r.Skipped)
	runtime.GC()

	var sb strings.Builder
	m := map[string]any{}
	for i := range 2000 {
		k := strconv.Itoa(i)
		m[k] = record{Name: k, Count: i, Tags: map[string]string{"k": k}}
		fmt.Fprintf(&sb, "%v %x %q %T;", i, i, k, m[k])
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys[:50] {
		v := reflect.ValueOf(m[k])
		for i := range v.NumField() {
			_ = fmt.Sprint(v.Type().Field(i).Name, v.Field(i).Interface())
		}
	}
	b, err := json.Marshal(record{Name: "a", Tags: map[string]string{"x": "y"}, Next: &record{Name: "b"}})
	if err != nil {
		panic(err)
	}
	var back record
	if err := json.Unmarshal(b, &back); err != nil || back.Next.Name != "b" {
		panic(fmt.Sprint("json round trip: ", err))
	}
	var total float64
	for i, s := range []shape{square{2}, circle{1}, square{3}} {
		total += s.area() * float64(i+1)
	}
	err = fmt.Errorf("wrapped: %w", os.ErrNotExist)
	if !errors.Is(err, os.ErrNotExist) {
		panic("errors.Is")
	}
	func() {
		defer func() { _ = recover() }()
		var p *record
		_ = p.Name // a nil dereference, recovered
	}()
	_ = debug.Stack()
	runtime.GC()
	fmt.Println("ok", len(sb.String()) > 0, total > 0, len(b))
}
