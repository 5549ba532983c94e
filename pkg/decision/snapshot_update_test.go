package decision_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/policy/compiler"
	pt "github.com/tollgate-dev/tollgate/pkg/policy/policytest"
)

// TestSnapshotUpdateEqualsRebuild: a snapshot updated change by change
// selects exactly as one built from scratch from the same policies and
// owners, for random sets of exact, wildcard and any-host, enforcing and
// dryRun policies of two namespaces, some forwarding headers.
func TestSnapshotUpdateEqualsRebuild(t *testing.T) {
	hosts := []string{"", "a.test", "b.test", "*.test", "*.b.test"}
	prefixes := []string{"/", "/api", "/api/users", "/x/"}
	namespaces := []string{"shop", "evil"}
	rng := rand.New(rand.NewPCG(8, 1))

	// policyFor compiles policy i: its slot (host, prefix, mode) is unique
	// among live policies, as pkg/policyset guarantees.
	policyFor := func(i, slot int) decision.Entry {
		host := hosts[slot%len(hosts)]
		prefix := prefixes[slot/len(hosts)%len(prefixes)]
		mods := []pt.Modifier{
			pt.WithName(namespaces[i%2], fmt.Sprintf("p%d", i)),
			pt.WithPathPrefix(prefix),
			pt.WithRule(v1alpha1.Rule{Name: "all", Anonymous: true}),
		}
		if host != "" {
			mods = append(mods, pt.WithHosts(host))
		}
		if slot/(len(hosts)*len(prefixes))%2 == 1 {
			mods = append(mods, pt.WithMode(v1alpha1.ModeDryRun))
		}
		if i%3 == 0 {
			mods = append(mods, pt.WithJWTChange(func(j *v1alpha1.JWT) {
				j.ForwardClaims = map[string]string{fmt.Sprintf("x-claim-%d", i%5): "sub"}
			}))
		}
		p, err := compiler.Compile(pt.New(mods...))
		if err != nil {
			t.Fatal(err)
		}
		return decision.Entry{Policy: p}
	}
	nSlots := len(hosts) * len(prefixes) * 2
	type live struct {
		entry decision.Entry
		slot  int
	}
	set := map[string]live{}
	owners := map[string]string{}
	free := func() int {
		used := map[int]bool{}
		for _, l := range set {
			used[l.slot] = true
		}
		for {
			if s := rng.IntN(nSlots); !used[s] {
				return s
			}
		}
	}
	snap := decision.NewSnapshot(nil, map[string]string{})
	for round := range 300 {
		var removed []string
		var added []decision.Entry
		delta := map[string]string{}
		for range 1 + rng.IntN(3) {
			if len(set) > 0 && rng.IntN(3) == 0 {
				keys := make([]string, 0, len(set))
				for k := range set {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				k := keys[rng.IntN(len(keys))]
				delete(set, k)
				removed = append(removed, k)
				added = slices.DeleteFunc(added, func(a decision.Entry) bool { return a.Policy.Key() == k })
				continue
			}
			if len(set) >= nSlots-2 {
				continue
			}
			i := rng.IntN(40)
			e := policyFor(i, free())
			set[e.Policy.Key()] = live{entry: e, slot: slotOf(e, hosts, prefixes)}
			added = slices.DeleteFunc(added, func(a decision.Entry) bool { return a.Policy.Key() == e.Policy.Key() })
			added = append(added, e)
			removed = slices.DeleteFunc(removed, func(k string) bool { return k == e.Policy.Key() })
		}
		if rng.IntN(2) == 0 {
			h := hosts[1+rng.IntN(len(hosts)-1)]
			ns := []string{"", "shop", "evil"}[rng.IntN(3)]
			delta[h] = ns
			if ns == "" {
				delete(owners, h)
			} else {
				owners[h] = ns
			}
		}
		prev := decision.NewEngine(decision.Options{})
		prev.Swap(snap)
		before := grid(prev)
		snap = snap.Update(removed, added, delta)
		if after := grid(prev); !slices.Equal(before, after) {
			t.Fatalf("round %d: Update changed the snapshot it started from", round)
		}
		all := make([]decision.Entry, 0, len(set))
		for _, l := range set {
			all = append(all, l.entry)
		}
		fresh := decision.NewSnapshot(all, maps(owners))
		if snap.Len() != fresh.Len() {
			t.Fatalf("round %d: %d policies, want %d", round, snap.Len(), fresh.Len())
		}
		updated, rebuilt := decision.NewEngine(decision.Options{}), decision.NewEngine(decision.Options{})
		updated.Swap(snap)
		rebuilt.Swap(fresh)
		if a, b := grid(updated), grid(rebuilt); !slices.Equal(a, b) {
			t.Fatalf("round %d: updated snapshot decides\n%v\nrebuilt decides\n%v", round, a, b)
		}
	}
}

// grid decides anonymous GETs of a grid of hosts and paths and returns,
// for each, the policy, dry-run policy and headers removed.
func grid(e *decision.Engine) []string {
	var out []string
	for _, h := range []string{"a.test", "b.test", "c.b.test", "z.test", "other.example"} {
		for _, p := range []string{"/", "/api", "/api/users/1", "/x/y", "/other"} {
			d := e.Decide(context.Background(), &decision.Request{Method: "GET", Host: h, Path: p, SourceIP: "192.0.2.1", Headers: map[string]string{}})
			out = append(out, fmt.Sprintf("%s%s: %s %s %v", h, p, d.Policy, d.DryRun.Policy, d.RemoveHeaders))
		}
	}
	return out
}

// slotOf recovers the slot of a generated policy, so that free() avoids it.
func slotOf(e decision.Entry, hosts, prefixes []string) int {
	p := e.Policy
	host := ""
	if len(p.Hosts) > 0 {
		host = p.Hosts[0].String()
	}
	s := slices.Index(hosts, host) + len(hosts)*slices.Index(prefixes, p.PathPrefix)
	if p.DryRun {
		s += len(hosts) * len(prefixes)
	}
	return s
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
