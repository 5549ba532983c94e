package controller_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	"github.com/tollgate-dev/tollgate/pkg/policy/policytest"
)

// BenchmarkPoliciesThroughAPIServer measures a tollgate process (the
// child, as in production: its own process, the config/rbac service
// account) serving N AuthPolicies of 5 rules each from a real API server
// (N = TOLLGATE_BENCH_POLICIES; unset skips it, as it takes minutes):
//
//   - start-to-ready-s: process start to /readyz 200 (caches synced, every
//     policy compiled and in the served snapshot);
//   - all-status-s: process start until every policy shows Ready=True;
//   - change-ms: one edited policy, update accepted by the API server to
//     the edit enforced over gRPC (median of 5; max reported too);
//   - idle-cpu-%: CPU of the idle process over 10 s, % of one core;
//   - rss-MB, hwm-MB: its resident and peak resident memory;
//   - and the same idle CPU and RSS of a tollgate watching an empty
//     namespace, in the same run, as the baseline.
//
// Run it with `make bench-kubernetes`, which is
//
//	TOLLGATE_BENCH_POLICIES=10000 go test ./pkg/controller -run '^$' -bench PoliciesThroughAPIServer -benchtime 1x -timeout 60m
func BenchmarkPoliciesThroughAPIServer(b *testing.B) {
	v := os.Getenv("TOLLGATE_BENCH_POLICIES")
	if v == "" {
		b.Skip("set TOLLGATE_BENCH_POLICIES (make bench-kubernetes: 10000, about 6 minutes)")
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		b.Fatal(err)
	}
	env := kube(b)
	kubeconfig := asTollgate(b, env)
	key := jwttest.NewEd25519(b)
	empty, ns := env.Namespace(b, "bench-empty"), env.Namespace(b, "bench")
	cleanup(b, env.Client, ns)

	base := startChild(b, kubeconfig, config{Namespace: empty})
	baseCPU := base.cpuPercent(10 * time.Second)
	baseRSS, _ := base.memoryMB()
	base.stop()

	start := time.Now()
	createPolicies(b, env.Config, ns, n, key)
	b.Logf("created %d policies in %v", n, time.Since(start).Round(time.Millisecond))

	for b.Loop() {
		start = time.Now()
		in := startChildUnready(b, kubeconfig, config{Namespace: ns})
		eventually(b, 30*time.Minute, "tollgate ready", func() bool { return in.readyz() == http.StatusOK })
		startToReady := time.Since(start)
		for _, i := range []int{0, n / 2, n - 1} {
			if got := in.check(benchHost(ns, i), "GET", "/api/r0/x", ""); got != http.StatusOK {
				b.Fatalf("policy %d: %d, want 200", i, got)
			}
		}
		poll(b, 60*time.Minute, time.Second, "every policy Ready", func() bool { return readyCount(b, env.Client, ns) == n })
		allStatus := time.Since(start)

		var changes []time.Duration
		for c := range 5 {
			i := (c*n)/5 + 1
			name := fmt.Sprintf("p%05d", i)
			path := fmt.Sprintf("/api/changed%d", c)
			edit(b, env.Client, ns, name, func(ap *v1alpha1.AuthPolicy) { ap.Spec.Rules[0].Path = path + "/**" })
			t0 := time.Now()
			eventually(b, time.Minute, "the change enforced", func() bool { return in.check(benchHost(ns, i), "GET", path+"/x", "") == http.StatusOK })
			changes = append(changes, time.Since(t0))
		}
		slices.Sort(changes)
		poll(b, 10*time.Minute, time.Second, "every policy Ready after the edits", func() bool { return readyCount(b, env.Client, ns) == n })

		cpu := in.cpuPercent(10 * time.Second)
		rss, hwm := in.memoryMB()
		in.stop()

		b.ReportMetric(startToReady.Seconds(), "start-to-ready-s")
		b.ReportMetric(allStatus.Seconds(), "all-status-s")
		b.ReportMetric(float64(changes[len(changes)/2].Microseconds())/1000, "change-ms")
		b.ReportMetric(float64(changes[len(changes)-1].Microseconds())/1000, "change-max-ms")
		b.ReportMetric(cpu, "idle-cpu-%")
		b.ReportMetric(rss, "rss-MB")
		b.ReportMetric(hwm, "hwm-MB")
		b.ReportMetric(baseCPU, "base-idle-cpu-%")
		b.ReportMetric(baseRSS, "base-rss-MB")
	}
}

// benchHost is the host of policy i.
func benchHost(ns string, i int) string { return fmt.Sprintf("p%05d.%s.example.test", i, ns) }

// createPolicies creates n policies of 5 rules, each on a host of its own,
// with 16 clients at once and no client-side rate limit.
func createPolicies(b *testing.B, cfg *rest.Config, ns string, n int, key *jwttest.Key) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0
	c, err := client.New(cfg, client.Options{Scheme: kube(b).Scheme})
	if err != nil {
		b.Fatal(err)
	}
	jwks := key.JWKS()
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			mods := []policytest.Modifier{
				policytest.WithName(ns, fmt.Sprintf("p%05d", i)), policytest.WithHosts(benchHost(ns, i)), policytest.WithPathPrefix("/api"),
				policytest.WithJWT(&v1alpha1.JWT{Issuer: issuer, JWKS: jwks}),
			}
			for r := range 4 {
				mods = append(mods, policytest.WithRule(policytest.AnonymousRule(fmt.Sprintf("r%d", r), fmt.Sprintf("/api/r%d/**", r))))
			}
			mods = append(mods, policytest.WithRule(policytest.OwnTasksRule()))
			ap := policytest.New(mods...)
			ap.TypeMeta = metav1.TypeMeta{}
			return c.Create(ctx, ap)
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
}

// readyCount is how many policies of ns are Ready=True for their current
// generation.
func readyCount(b *testing.B, c client.Client, ns string) int {
	var list v1alpha1.AuthPolicyList
	if err := c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, ap := range list.Items {
		c := meta.FindStatusCondition(ap.Status.Conditions, v1alpha1.ConditionReady)
		if c != nil && c.Status == metav1.ConditionTrue && ap.Status.ObservedGeneration == ap.Generation {
			n++
		}
	}
	return n
}

// cpuPercent is the child's CPU time over d, in % of one core.
func (in *instance) cpuPercent(d time.Duration) float64 {
	in.t.Helper()
	c0, t0 := in.cpuTime(), time.Now()
	time.Sleep(d) // a measurement window, not synchronisation
	return 100 * (in.cpuTime() - c0).Seconds() / time.Since(t0).Seconds()
}

// cpuTime is the child's user+system CPU time so far (/proc/PID/stat).
func (in *instance) cpuTime() time.Duration {
	in.t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", in.pid))
	if err != nil {
		in.t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start at state.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// memoryMB is the child's resident set and its peak (/proc/PID/status).
func (in *instance) memoryMB() (rss, hwm float64) {
	in.t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", in.pid))
	if err != nil {
		in.t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}
