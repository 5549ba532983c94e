package cowmap_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/cowmap"
)

func TestGetCreatesEachKeyOnceUnderConcurrency(t *testing.T) {
	var m cowmap.Map[string, *atomic.Int64]
	var created atomic.Int64
	create := func(string) *atomic.Int64 { created.Add(1); return new(atomic.Int64) }
	keys := []string{"a", "b", "c", "d"}
	const goroutines, each = 8, 1000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m.Get(keys[(g+i)%len(keys)], create).Add(1)
			}
		}()
	}
	wg.Wait()
	if n := created.Load(); n != int64(len(keys)) {
		t.Errorf("created %d values for %d keys", n, len(keys))
	}
	var total int64
	seen := 0
	m.Range(func(_ string, v *atomic.Int64) bool { total += v.Load(); seen++; return true })
	if seen != len(keys) || total != goroutines*each {
		t.Errorf("range saw %d keys and %d gets, want %d and %d", seen, total, len(keys), goroutines*each)
	}
}

func TestGetOfAnExistingKeyDoesNotAllocate(t *testing.T) {
	var m cowmap.Map[string, int]
	m.Get("rate_limited", func(string) int { return 1 })
	key := string([]byte("rate_limited")) // not the same string data
	if n := testing.AllocsPerRun(100, func() { m.Get(key, nil) }); n != 0 {
		t.Errorf("%v allocations per Get", n)
	}
}

func TestGetIfAddsOnlyWhatCreateKeeps(t *testing.T) {
	var m cowmap.Map[string, int]
	calls := 0
	refuse := func(string) (int, bool) { calls++; return -1, false }
	keep := func(string) (int, bool) { calls++; return 7, true }
	if v := m.GetIf("a", refuse); v != -1 || m.Len() != 0 {
		t.Fatalf("refused value: got %d, %d keys", v, m.Len())
	}
	if v := m.GetIf("a", keep); v != 7 || calls != 2 {
		t.Fatalf("after a refusal: got %d after %d creates, want 7 after 2", v, calls)
	}
	if v := m.GetIf("a", refuse); v != 7 || calls != 2 {
		t.Fatalf("a kept value: got %d after %d creates, want 7 after 2", v, calls)
	}
}

func TestEditChangesTheMapInOneStep(t *testing.T) {
	var m cowmap.Map[string, int]
	m.Get("a", func(string) int { return 1 })
	m.Get("b", func(string) int { return 2 })
	m.Edit(func(all map[string]int) {
		delete(all, "a")
		all["c"] = 3
	})
	got := map[string]int{}
	m.Range(func(k string, v int) bool { got[k] = v; return true })
	if len(got) != 2 || got["b"] != 2 || got["c"] != 3 {
		t.Fatalf("after Edit: %v", got)
	}
	if _, ok := m.Load("a"); ok {
		t.Fatal("a deleted key is still there")
	}
	if v := m.Get("a", func(string) int { return 4 }); v != 4 {
		t.Fatalf("a deleted key got again: %d, want a new value", v)
	}
}

func TestEditDoesNotChangeWhatAReaderHolds(t *testing.T) {
	var m cowmap.Map[int, int]
	for i := range 100 {
		m.Get(i, func(k int) int { return k })
	}
	seen := 0
	m.Range(func(int, int) bool {
		if seen == 0 {
			m.Edit(func(all map[int]int) { clear(all) })
		}
		seen++
		return true
	})
	if seen != 100 || m.Len() != 0 {
		t.Fatalf("a Range that began before an Edit emptied the map saw %d of 100 keys; %d keys after", seen, m.Len())
	}
}
