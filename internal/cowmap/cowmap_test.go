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
