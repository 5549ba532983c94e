package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
	"github.com/tollgate-dev/tollgate/pkg/server"
)

// quotaPolicy limits each user to perUser requests (premium: premium) and
// each IP to perIP, per hour.
func quotaPolicy(perUser, premium, perIP int) string {
	return fmt.Sprintf(`apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: tasks-api
  namespace: shop
spec:
  jwt:
    issuer: %s
    jwks: '$JWKS'
  limits:
    - name: per-ip
      requests: %d
      period: 1h
      by: ip
  rules:
    - name: own-tasks
      path: /api/users/{userId}/tasks/**
      owner:
        path: userId
      limits:
        - name: per-user
          requests: %d
          period: 1h
          by: user
          tiers:
            claim: plan
            values:
              premium: {requests: %d}
`, issuer, perIP, perUser, premium)
}

func withRedis(addr string, cluster []string, onError string) func(*server.Options) {
	return func(o *server.Options) {
		o.QuotaStore = "redis"
		o.Redis = ratelimit.ClientOptions{Addr: addr, ClusterAddrs: cluster}
		o.OnStoreError = onError
	}
}

// patientStore gives the Redis store a budget and client timeouts that no
// machine load exceeds. Tests of exact counting use it: exactness comes
// from atomic scripts, not from timing, and a check that ran out of its
// 75 ms budget on a loaded machine would count in the per-replica fallback
// instead (noFallback checks that none did).
func patientStore(o *server.Options) {
	o.StoreBudget = time.Minute
	o.Redis.Timeout = time.Minute
}

// noFallback fails the test when any replica may have decided a check
// without Redis: a check falls back when its call fails
// (tollgate_quota_store_errors_total), or while the breaker is open, which
// failed calls or pings open ("quota store down" is logged).
func noFallback(t *testing.T, hs []*harness) {
	t.Helper()
	for i, h := range hs {
		if _, m := get(t, h.srv.Addr("metrics"), "/metrics"); !strings.Contains(m, "\ntollgate_quota_store_errors_total 0\n") {
			t.Errorf("replica %d: the quota store failed calls, so some checks followed --on-store-error:\n%s", i, grepLines(m, "tollgate_quota_store_"))
		}
		if logs := h.logs.String(); strings.Contains(logs, "quota store down") {
			t.Errorf("replica %d: the quota store's breaker opened, so some checks may have followed --on-store-error:\n%s", i, grepLines(logs, "quota store"))
		}
	}
}

// grepLines returns the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

// replicas starts n tollgate servers sharing one policy key and one Redis.
func replicas(t *testing.T, n int, policy string, mutate ...func(*server.Options)) ([]*harness, *jwttest.Key) {
	t.Helper()
	first := start(t, map[string]string{"tasks.yaml": policy}, mutate...)
	hs := []*harness{first}
	for range n - 1 {
		h := start(t, nil, append(slices.Clip(mutate), func(o *server.Options) { o.PolicyPaths = []string{first.dir} })...)
		h.key = first.key
		hs = append(hs, h)
	}
	return hs, first.key
}

// spread sends total concurrent checks round-robin over the replicas and
// counts the answers by status.
func spread(t *testing.T, hs []*harness, total int, path, token string) map[int]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	for i := range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := hs[i%len(hs)]
			resp, err := h.auth.Check(context.Background(), checkRequest(path, token, nil, nil))
			if err != nil {
				t.Errorf("Check: %v", err)
				return
			}
			mu.Lock()
			counts[grpcOutcome(resp).status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return counts
}

func TestRedisQuotaIsExactAcrossReplicas(t *testing.T) {
	single := redistest.StartServer(t)
	cluster := redistest.StartCluster(t, 3)
	for name, opt := range map[string]func(*server.Options){
		"one redis-server":         withRedis(single.Addr, nil, "local"),
		"a 3-master Redis Cluster": withRedis("", cluster.Addrs, "local"),
	} {
		t.Run(name, func(t *testing.T) {
			hs, key := replicas(t, 3, quotaPolicy(20, 30, 1000), opt, patientStore)
			token := key.Mint(t, jwttest.Claims("alice-"+strings.ReplaceAll(name, " ", "-"), issuer, "", time.Now(), time.Hour))
			sub := "alice-" + strings.ReplaceAll(name, " ", "-")
			counts := spread(t, hs, 90, "/api/users/"+sub+"/tasks", token)
			noFallback(t, hs)
			if counts[200] != 20 || counts[429] != 70 {
				t.Fatalf("statuses %v, want exactly 20 allowed and 70 rate-limited", counts)
			}
		})
	}
}

func TestRedisTiersAreLimitsNotCounters(t *testing.T) {
	redis := redistest.StartServer(t)
	hs, key := replicas(t, 2, quotaPolicy(2, 4, 1000), withRedis(redis.Addr, nil, "local"), patientStore)
	defer noFallback(t, hs)
	for _, sub := range []string{"paula", "petra"} {
		token := key.Mint(t, map[string]any{"sub": sub, "iss": issuer, "plan": "premium", "exp": time.Now().Add(time.Hour).Unix()})
		counts := spread(t, hs, 6, "/api/users/"+sub+"/tasks", token)
		if counts[200] != 4 || counts[429] != 2 {
			t.Fatalf("%s (premium): %v, want the tier's 4 allowed, on a counter of her own", sub, counts)
		}
	}
	free := key.Mint(t, jwttest.Claims("frank", issuer, "", time.Now(), time.Hour))
	if counts := spread(t, hs, 4, "/api/users/frank/tasks", free); counts[200] != 2 {
		t.Fatalf("frank (no plan): %v, want the base limit of 2", counts)
	}
}

// TestRedisTierChangeKeepsTheRequestsSpent: SPEC "a tier changes the limit,
// not the counter". A user who spent the free tier's 2 and then sends a
// premium token has 2 of the premium tier's 4 left, on any replica; back on
// the free tier, the 4 spent leave none.
func TestRedisTierChangeKeepsTheRequestsSpent(t *testing.T) {
	redis := redistest.StartServer(t)
	hs, key := replicas(t, 2, quotaPolicy(2, 4, 1000), withRedis(redis.Addr, nil, "local"), patientStore)
	defer noFallback(t, hs)
	free := key.Mint(t, jwttest.Claims("uma", issuer, "", time.Now(), time.Hour))
	premium := key.Mint(t, map[string]any{"sub": "uma", "iss": issuer, "plan": "premium", "exp": time.Now().Add(time.Hour).Unix()})
	path := "/api/users/uma/tasks"
	for _, step := range []struct {
		token   string
		n       int
		allowed int
	}{
		{free, 3, 2},    // the free tier's 2
		{premium, 4, 2}, // 2 of premium's 4 are spent
		{free, 1, 0},    // 4 spent: the free tier is full
	} {
		if counts := spread(t, hs, step.n, path, step.token); counts[200] != step.allowed || counts[429] != step.n-step.allowed {
			t.Fatalf("%v, want %d of %d allowed, the rest rate-limited", counts, step.allowed, step.n)
		}
	}
}

func TestRedisDeniedRequestsConsumeNothing(t *testing.T) {
	redis := redistest.StartServer(t)
	// per-user 3, per-ip 5: alice's fourth request is denied by per-user
	// and must not use per-ip, so bob still gets two of the IP's five.
	hs, key := replicas(t, 1, quotaPolicy(3, 3, 5), withRedis(redis.Addr, nil, "local"), patientStore)
	defer noFallback(t, hs)
	h := hs[0]
	alice := key.Mint(t, jwttest.Claims("alice", issuer, "", time.Now(), time.Hour))
	bob := key.Mint(t, jwttest.Claims("bob", issuer, "", time.Now(), time.Hour))
	remaining := func(sub, token string) (int, string) {
		o := grpcOutcome(h.check(checkRequest("/api/users/"+sub+"/tasks", token, nil, nil)))
		if o.status == 200 {
			return 200, o.clientRL["x-ratelimit-remaining"]
		}
		return o.status, o.headers["x-ratelimit-remaining"]
	}
	for range 3 {
		if s, _ := remaining("alice", alice); s != 200 {
			t.Fatalf("alice allowed request: %d", s)
		}
	}
	for range 3 {
		if s, r := remaining("alice", alice); s != 429 || r != "0" {
			t.Fatalf("alice over her limit: %d remaining %s", s, r)
		}
	}
	// Alice's denials took nothing from the shared per-ip limit: 5-3 = 2 left.
	if s, r := remaining("bob", bob); s != 200 || r != "1" {
		t.Fatalf("bob: %d remaining %q, want 200 with 1 left on the IP limit", s, r)
	}
	if s, _ := remaining("bob", bob); s != 200 {
		t.Fatalf("bob's second: %d", s)
	}
	// Load from another key (bob now at the IP limit) leaves alice's count as it was.
	if s, r := remaining("alice", alice); s != 429 || r != "0" {
		t.Fatalf("alice after bob's load: %d remaining %s", s, r)
	}
}

// answersWithin bounds the time a check takes while Redis is down: far
// more than the store's budget, so that a loaded machine never fails it,
// and far less than a hang.
const answersWithin = 5 * time.Second

func TestRedisOutage(t *testing.T) {
	for _, mode := range []struct {
		onError string
		// status of a fresh user's first check while Redis is down
		status int
	}{{"local", 200}, {"allow", 200}, {"deny", 429}} {
		t.Run(mode.onError, func(t *testing.T) {
			redis := redistest.StartServer(t)
			hs, key := replicas(t, 2, quotaPolicy(3, 3, 1000), withRedis(redis.Addr, nil, mode.onError))
			token := key.Mint(t, jwttest.Claims("olga", issuer, "", time.Now(), time.Hour))
			path := "/api/users/olga/tasks"
			// Poll: on a loaded machine a check (or the pings) may exceed
			// the budget and follow --on-store-error before the outage too.
			hs[0].waitFor("a check allowed before the outage", func() bool {
				return grpcOutcome(hs[0].check(checkRequest(path, token, nil, nil))).status == 200
			})
			redis.Stop()
			for i := range 10 {
				start := time.Now()
				o := grpcOutcome(hs[i%2].check(checkRequest(path, token, nil, nil)))
				// Answers rather than hangs; that a check waits at most its
				// budget is TestResilientWaitsAtMostItsBudget's, without
				// timing, and the budget's bound TestStoreBudget's.
				if took := time.Since(start); took > answersWithin {
					t.Errorf("check %d took %v with Redis down, want an answer within %s", i, took, answersWithin)
				}
				if i == 0 && o.status != mode.status {
					t.Errorf("first check with Redis down: %d, want %d", o.status, mode.status)
				}
				if mode.onError == "allow" && o.status != 200 {
					t.Errorf("allow mode denied check %d: %+v", i, o)
				}
				if mode.onError == "deny" && o.status != 429 {
					t.Errorf("deny mode allowed check %d: %+v", i, o)
				}
			}
			for _, h := range hs {
				code, body := get(t, h.srv.Addr("health"), "/readyz")
				if code != 200 || !strings.Contains(body, `"quotaStore":"down"`) {
					t.Errorf("/readyz during the outage: %d %s", code, body)
				}
				if _, m := get(t, h.srv.Addr("metrics"), "/metrics"); !strings.Contains(m, "tollgate_quota_store_up 0") {
					t.Error("tollgate_quota_store_up is not 0 during the outage")
				}
			}

			redis.Restart()
			// Without any traffic, the store's recovery shows in /readyz.
			for _, h := range hs {
				h.waitFor("/readyz to report the store up", func() bool {
					_, body := get(t, h.srv.Addr("health"), "/readyz")
					return strings.Contains(body, `"quotaStore":"up"`)
				})
			}
			// Shared counting resumes without restarting tollgate: a new
			// user's 3 requests on one replica exhaust her limit on the
			// other. go-redis redials with a backoff, so poll.
			n := 0
			hs[0].waitFor("shared counting to resume", func() bool {
				n++
				sub := fmt.Sprintf("rita-%d", n)
				token := key.Mint(t, jwttest.Claims(sub, issuer, "", time.Now(), time.Hour))
				path := "/api/users/" + sub + "/tasks"
				for range 3 {
					if grpcOutcome(hs[0].check(checkRequest(path, token, nil, nil))).status != 200 {
						return false
					}
				}
				return grpcOutcome(hs[1].check(checkRequest(path, token, nil, nil))).status == 429
			})
			for _, h := range hs {
				h.waitFor("tollgate_quota_store_up 1", func() bool {
					_, m := get(t, h.srv.Addr("metrics"), "/metrics")
					return strings.Contains(m, "tollgate_quota_store_up 1")
				})
			}
		})
	}
}

func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestQuotaStoreHealthWithoutTraffic: with no check at all, /readyz and
// tollgate_quota_store_up follow Redis within 5 s (the harness's waitFor
// deadline): down from the start while Redis was never reached, up once it
// answers, down again when it stops. Readiness never changes.
func TestQuotaStoreHealthWithoutTraffic(t *testing.T) {
	redis := redistest.StartServer(t)
	redis.Stop()
	h := start(t, map[string]string{"tasks.yaml": quotaPolicy(3, 3, 1000)}, withRedis(redis.Addr, nil, "local"))
	state := func() (int, string, string) {
		code, body := get(t, h.srv.Addr("health"), "/readyz")
		_, m := get(t, h.srv.Addr("metrics"), "/metrics")
		up := ""
		for line := range strings.SplitSeq(m, "\n") {
			if v, ok := strings.CutPrefix(line, "tollgate_quota_store_up "); ok {
				up = v
			}
		}
		return code, body, up
	}
	// The store is down from the start; its error is known once the first
	// background ping has failed, which may be after the first /readyz.
	var (
		code     int
		body, up string
	)
	h.waitFor("Redis never reached: ready, the store down with its error, tollgate_quota_store_up 0", func() bool {
		code, body, up = state()
		if code != 200 || !strings.Contains(body, `"quotaStore":"down"`) || up != "0" {
			t.Fatalf("Redis never reached: /readyz %d %s, tollgate_quota_store_up %q; want ready, the store down, 0", code, body, up)
		}
		return strings.Contains(body, "connection refused")
	})
	for _, step := range []struct {
		do        func()
		store, up string
	}{
		{redis.Restart, "up", "1"},
		{redis.Stop, "down", "0"},
	} {
		step.do()
		began := time.Now()
		h.waitFor("the store "+step.store+" without traffic", func() bool {
			code, body, up = state()
			return code == 200 && strings.Contains(body, `"quotaStore":"`+step.store+`"`) && up == step.up
		})
		t.Logf("store %s after %v", step.store, time.Since(began).Round(100*time.Millisecond))
	}
}
