package policyset_test

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/internal/policygen"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	"github.com/tollgate-dev/tollgate/pkg/policyfile"
	"github.com/tollgate-dev/tollgate/pkg/policyset"
	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
)

// generated returns policies 0..n-1 of policygen, decoded as files are.
func generated(b *testing.B, n int, jwks string, private ...int) []*v1alpha1.AuthPolicy {
	b.Helper()
	out := make([]*v1alpha1.AuthPolicy, n)
	for i := range n {
		docs, err := policyfile.Parse([]byte(policygen.Policy(i, jwks, false)))
		if err != nil || len(docs) != 1 || docs[0].Err != nil {
			b.Fatalf("policy %d: %v %v", i, err, docs)
		}
		out[i] = docs[0].Policy
	}
	return out
}

// newSet returns a set of policies publishing into a new engine with a
// memory quota store.
func newSet(b *testing.B, aps []*v1alpha1.AuthPolicy) (*policyset.Set, *decision.Engine) {
	b.Helper()
	keys := jwt.NewManager(jwt.Options{})
	b.Cleanup(keys.Close)
	quota := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	b.Cleanup(func() { quota.Close() })
	engine := decision.NewEngine(decision.Options{Quota: quota})
	set := policyset.New(policyset.Options{Keys: keys, Publish: func(s *decision.Snapshot, _ []string) { engine.Swap(s) }})
	b.Cleanup(set.Close)
	for i, ap := range aps {
		if st := set.ApplyFrom(ap, policyset.Origin{File: policygen.File(i)}); !st.Ready() {
			b.Fatalf("%s: %+v", policygen.Key(i), st)
		}
	}
	if err := set.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	return set, engine
}

// BenchmarkCheckAtScale measures the cost of a decision with 10,000
// policies against the cost with 10, in one run: both engines decide the
// same requests (hosts of policies 0..9, a cached token, ownership, two
// limits) in alternating chunks, and the median of the chunks' cost ratios
// is reported as "large/small". The goal is a ratio within 1.10.
func BenchmarkCheckAtScale(b *testing.B) {
	key := jwttest.NewEd25519(b)
	all := generated(b, 10_000, key.JWKS())
	_, small := newSet(b, all[:10])
	_, large := newSet(b, all)
	token := key.Mint(b, jwttest.Claims("alice", policygen.Issuer, "", time.Now(), time.Hour))
	reqs := make([]*decision.Request, 10)
	for i := range reqs {
		reqs[i] = &decision.Request{
			Method: "GET", Host: policygen.Host(i), Path: "/api/users/alice/tasks/42", SourceIP: "192.0.2.1",
			Headers: map[string]string{"authorization": "Bearer " + token},
		}
	}
	ctx := context.Background()
	for _, e := range []*decision.Engine{small, large} {
		for _, r := range reqs {
			if d := e.Decide(ctx, r); !d.Allowed {
				b.Fatalf("denied: %+v", d)
			}
		}
	}
	const chunk = 64
	var tSmall, tLarge time.Duration
	var ratios []float64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		engines := [2]*decision.Engine{small, large}
		var took [2]time.Duration
		first := i % 2 // alternate which goes first
		for k := range engines {
			e := engines[(k+first)%2]
			start := time.Now()
			for j := range chunk {
				e.Decide(ctx, reqs[j%len(reqs)])
			}
			took[(k+first)%2] = time.Since(start)
		}
		tSmall += took[0]
		tLarge += took[1]
		ratios = append(ratios, float64(took[1])/float64(took[0]))
	}
	n := float64(b.N * chunk)
	slices.Sort(ratios)
	b.ReportMetric(float64(tSmall.Nanoseconds())/n, "ns/check@10")
	b.ReportMetric(float64(tLarge.Nanoseconds())/n, "ns/check@10000")
	// The median of the rounds' ratios: a round the machine's load
	// stretched weighs no more than any other.
	b.ReportMetric(ratios[len(ratios)/2], "large/small")
}

// BenchmarkApplyAll applies 10,000 policies to an empty set and publishes
// them: the in-process part of start to Ready.
func BenchmarkApplyAll(b *testing.B) {
	key := jwttest.NewEd25519(b)
	all := generated(b, 10_000, key.JWKS())
	for b.Loop() {
		b.StopTimer()
		keys := jwt.NewManager(jwt.Options{})
		published := 0
		set := policyset.New(policyset.Options{Keys: keys, Publish: func(*decision.Snapshot, []string) { published++ }})
		b.StartTimer()
		for i, ap := range all {
			set.ApplyFrom(ap, policyset.Origin{File: policygen.File(i)})
		}
		if err := set.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(published), "snapshots")
		set.Close()
		keys.Close()
		b.StartTimer()
	}
}

// BenchmarkApplyOne changes one policy of 10,000 and publishes: the
// in-process part of one change applied.
func BenchmarkApplyOne(b *testing.B) {
	key := jwttest.NewEd25519(b)
	all := generated(b, 10_000, key.JWKS())
	set, _ := newSet(b, all)
	versions := [2]*v1alpha1.AuthPolicy{all[5000].DeepCopy(), all[5000].DeepCopy()}
	versions[1].Spec.Rules[1].Anonymous = false
	applyInTurn(b, set, policyset.Origin{File: policygen.File(5000)}, versions[:]...)
}

// applyInTurn applies versions of one policy from origin o in turn, and
// publishes each, as the benchmark's operation; it reports the CPU time
// per operation.
func applyInTurn(b *testing.B, set *policyset.Set, o policyset.Origin, versions ...*v1alpha1.AuthPolicy) {
	b.Helper()
	cpu0 := processCPU()
	for i := 0; b.Loop(); i++ {
		if st := set.ApplyFrom(versions[i%len(versions)], o); !st.Ready() {
			b.Fatal(fmt.Sprint(st))
		}
		if err := set.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
}

// processCPU returns the CPU time the process has used: on a loaded
// machine it says more of a cost than the wall clock.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkApplyOneHost changes the hosts of one policy of 10,000, half of
// which also name a wildcard under their host (*.svc-i.example.test), and
// publishes: the in-process cost of a change to host ownership. Policy
// 5000 gains and loses its wildcard in turn.
func BenchmarkApplyOneHost(b *testing.B) {
	key := jwttest.NewEd25519(b)
	all := generated(b, 10_000, key.JWKS())
	for i, ap := range all {
		if i%2 == 1 {
			ap.Spec.Hosts = append(ap.Spec.Hosts, "*."+policygen.Host(i))
		}
	}
	set, _ := newSet(b, all)
	versions := [2]*v1alpha1.AuthPolicy{all[5000].DeepCopy(), all[5000].DeepCopy()}
	versions[1].Spec.Hosts = append(versions[1].Spec.Hosts, "*."+policygen.Host(5000))
	applyInTurn(b, set, policyset.Origin{File: policygen.File(5000)}, versions[:]...)
}

// BenchmarkApplyWildcardOverAll applies and deletes, in turn, a policy of
// another namespace on *.example.test, a wildcard over the 10,000 names of
// the set (all older, so all keep their owners), and publishes: the most
// a host change can touch, every name under a wildcard.
func BenchmarkApplyWildcardOverAll(b *testing.B) {
	key := jwttest.NewEd25519(b)
	all := generated(b, 10_000, key.JWKS())
	set, _ := newSet(b, all)
	wild := all[0].DeepCopy()
	wild.Namespace, wild.Name = "zz-other", "wild"
	wild.Spec.Hosts = []string{"*.example.test"}
	origin := policyset.Origin{File: "zz-wild.yaml"}
	cpu0 := processCPU()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			if st := set.ApplyFrom(wild, origin); !st.Ready() {
				b.Fatal(fmt.Sprint(st))
			}
		} else {
			set.DeleteFrom(wild.Namespace, wild.Name, origin)
		}
		if err := set.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
}
