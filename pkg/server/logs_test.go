package server_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/testlog"
	"github.com/tollgate-dev/tollgate/pkg/server"
)

// records parses JSON log lines.
func records(t testing.TB, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is no JSON record: %q", line)
		}
		out = append(out, rec)
	}
	return out
}

// mustLogger returns serve's logger (JSON at level) writing to w.
func mustLogger(t testing.TB, w io.Writer, level slog.Level) *slog.Logger {
	t.Helper()
	log, err := logging.New(w, level, logging.FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// withLogger makes the server log JSON at level to buf.
func withLogger(t testing.TB, buf *testlog.Buffer, level slog.Level) func(*server.Options) {
	return func(o *server.Options) { o.Logger = mustLogger(t, buf, level) }
}

// TestDecisionLogLines: each decision's line carries the request id (the
// proxy's, else x-request-id), policy, rule, reason, status and sub, and a
// 429 the limit and what it counts by; denies at info, allows at debug;
// never the token.
func TestDecisionLogLines(t *testing.T) {
	var logs testlog.Buffer
	h := start(t, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 1)}, withLogger(t, &logs, slog.LevelDebug))
	alice := h.token("alice", nil)

	allow := checkRequest("/api/users/alice/tasks", alice, map[string]string{"x-request-id": "client-chosen"}, nil)
	allow.Attributes.Request.Http.Id = "envoy-1" // Envoy's own id wins over the header
	h.check(allow)
	h.check(checkRequest("/api/users/alice/tasks", alice, map[string]string{"x-request-id": "grpc-429"}, nil))
	h.check(checkRequest("/api/users/bob/tasks", alice, map[string]string{"x-request-id": "grpc-403"}, nil))
	h.httpOutcome("/api/users/alice/tasks", alice, map[string]string{"X-Request-Id": "http-429"})
	h.httpOutcome("/api/users/carol/tasks", "", map[string]string{"X-Request-Id": strings.Repeat("x", 500)})
	// Forwarding headers that contradict each other are rejected before any
	// decision, and logged as a deny all the same.
	h.httpOutcome("/api/users/alice/tasks", alice, map[string]string{"X-Request-Id": "http-400", "X-Original-Uri": "/api/admin"})

	tests := map[string]struct {
		want   map[string]any
		absent []string
	}{
		"envoy-1": {want: map[string]any{"level": "DEBUG", "msg": "allow", "transport": "grpc", "policy": "shop/tasks-api", "rule": "own-tasks",
			"reason": "allowed", "status": 200.0, "sub": "alice", "path": "/api/users/alice/tasks"}, absent: []string{"limit", "limit_by"}},
		"grpc-429": {want: map[string]any{"level": "INFO", "msg": "deny", "transport": "grpc", "policy": "shop/tasks-api", "rule": "own-tasks",
			"reason": "rate_limited", "status": 429.0, "sub": "alice", "limit": "per-user", "limit_by": "user"}},
		"grpc-403": {want: map[string]any{"level": "INFO", "msg": "deny", "reason": "owner_mismatch", "status": 403.0, "sub": "alice"},
			absent: []string{"limit", "limit_by"}},
		"http-429":               {want: map[string]any{"msg": "deny", "transport": "http", "reason": "rate_limited", "limit": "per-user", "limit_by": "user"}},
		strings.Repeat("x", 128): {want: map[string]any{"msg": "deny", "transport": "http", "reason": "missing", "sub": ""}},
		"http-400":               {want: map[string]any{"msg": "deny", "transport": "http", "reason": "invalid_forward_auth", "status": 400.0}},
	}
	var recs []map[string]any
	h.waitFor("a line per decision", func() bool {
		recs = records(t, logs.String())
		n := 0
		for _, r := range recs {
			if id, _ := r["request_id"].(string); tests[id].want != nil {
				n++
			}
		}
		return n == len(tests)
	})
	for id, tc := range tests {
		t.Run(id[:min(len(id), 10)], func(t *testing.T) {
			var rec map[string]any
			for _, r := range recs {
				if r["request_id"] == id {
					rec = r
				}
			}
			for k, v := range tc.want {
				if rec[k] != v {
					t.Errorf("%s = %v, want %v (%v)", k, rec[k], v, rec)
				}
			}
			for _, k := range tc.absent {
				if _, ok := rec[k]; ok {
					t.Errorf("%s present: %v", k, rec)
				}
			}
		})
	}
	if all := logs.String(); strings.Contains(all, alice[strings.LastIndexByte(alice, '.')+1:]) || strings.Contains(all, alice[:30]) ||
		strings.Contains(all, "client-chosen") {
		t.Errorf("logs contain the token, or the header id where Envoy gave one:\n%s", all)
	}
}

// TestDenyLogFlood: a flood of denials logs the burst, holds back the rest
// and reports how many per reason; allows are not logged at info.
func TestDenyLogFlood(t *testing.T) {
	var logs testlog.Buffer
	h := start(t, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 1000)}, withLogger(t, &logs, slog.LevelInfo),
		func(o *server.Options) {
			o.DenyLog = logging.LimiterOptions{Burst: 5, Every: time.Hour}
			o.DenyLogReport = 20 * time.Millisecond
		})
	alice := h.token("alice", nil)
	const flood = 60
	for range flood {
		h.check(checkRequest("/api/users/alice/tasks", "", nil, nil)) // 401 missing
	}
	h.check(checkRequest("/api/users/bob/tasks", alice, nil, nil)) // 403: a reason of its own
	h.check(checkRequest("/api/users/alice/tasks", alice, nil, nil))

	var denies, suppressed int
	h.waitFor("the suppressed lines to be reported", func() bool {
		denies, suppressed = 0, 0
		for _, r := range records(t, logs.String()) {
			switch {
			case r["msg"] == "deny" && r["reason"] == "missing":
				denies++
			case r["msg"] == "deny lines suppressed" && r["reason"] == "missing" && r["mode"] == "enforce":
				suppressed += int(r["suppressed"].(float64))
			}
		}
		return denies+suppressed == flood
	})
	if denies != 5 {
		t.Errorf("%d deny lines for %d denials, want the burst of 5", denies, flood)
	}
	all := logs.String()
	if !strings.Contains(all, `"reason":"owner_mismatch"`) {
		t.Error("the flood of one reason held back another reason's line")
	}
	if strings.Contains(all, `"msg":"allow"`) {
		t.Error("an allow was logged at info")
	}
}

// TestDenyLineWithoutRequestIDGetsOne: SPEC "Every deny is logged at info
// with request id": a request that carries no id (no Envoy
// request.http.id, no x-request-id) still gets one in its deny line, a new
// one per request; a forwarding-header reject line carries the same fields
// as a decision's.
func TestDenyLineWithoutRequestIDGetsOne(t *testing.T) {
	var logs testlog.Buffer
	h := start(t, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 1)}, withLogger(t, &logs, slog.LevelInfo))
	h.check(checkRequest("/api/users/alice/tasks", "", nil, nil))
	h.httpOutcome("/api/users/alice/tasks", "", nil)
	h.httpOutcome("/api/users/alice/tasks", "", map[string]string{"X-Original-Uri": "/api/admin"})

	var denies []map[string]any
	h.waitFor("three deny lines", func() bool {
		denies = denies[:0]
		for _, r := range records(t, logs.String()) {
			if r["msg"] == "deny" {
				denies = append(denies, r)
			}
		}
		return len(denies) == 3
	})
	seen := map[string]bool{}
	for _, r := range denies {
		id, _ := r["request_id"].(string)
		if id == "" || seen[id] {
			t.Errorf("request_id = %q (empty or repeated): %v", id, r)
		}
		seen[id] = true
		for _, k := range []string{"policy", "rule", "reason", "sub"} {
			if _, ok := r[k]; !ok {
				t.Errorf("%s absent: %v", k, r)
			}
		}
	}
}

// TestDenyLineNamesTheSubOfAnAuthenticToken: SPEC "every deny is logged
// ... with the user's sub": a token whose signature verifies but whose
// claims do not (expired, wrong audience) names its user in the deny line;
// a token whose signature fails names nobody.
func TestDenyLineNamesTheSubOfAnAuthenticToken(t *testing.T) {
	var logs testlog.Buffer
	h := start(t, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 100)}, withLogger(t, &logs, slog.LevelInfo))
	expired := h.token("eve", map[string]any{"exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()})
	forged := h.token("mallory", nil)
	forged = forged[:strings.LastIndexByte(forged, '.')+1] + "AAAA"
	h.check(checkRequest("/api/users/eve/tasks", expired, map[string]string{"x-request-id": "expired"}, nil))
	h.check(checkRequest("/api/users/mallory/tasks", forged, map[string]string{"x-request-id": "forged"}, nil))

	want := map[string][2]string{"expired": {"expired", "eve"}, "forged": {"bad_signature", ""}}
	got := map[string]map[string]any{}
	h.waitFor("two deny lines", func() bool {
		for _, r := range records(t, logs.String()) {
			if id, _ := r["request_id"].(string); r["msg"] == "deny" {
				got[id] = r
			}
		}
		return len(got) >= 2
	})
	for id, w := range want {
		if r := got[id]; r["reason"] != w[0] || r["sub"] != w[1] {
			t.Errorf("%s: reason %v sub %q, want %s and %q (%v)", id, r["reason"], r["sub"], w[0], w[1], r)
		}
	}
}
