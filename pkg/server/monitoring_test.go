package server_test

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"
)

func TestParsePromQL(t *testing.T) {
	tests := map[string]struct {
		expr      string
		selectors []string // metric{label op value,...}
		grouping  []string
	}{
		"an aggregation with by before its argument": {
			expr:      `sum by (reason) (rate(tollgate_decisions_total{mode="enforce",result="deny"}[$__rate_interval]))`,
			selectors: []string{`tollgate_decisions_total{mode="enforce",result="deny"}`},
			grouping:  []string{"reason"},
		},
		"a histogram quantile and a by after the argument": {
			expr:      `histogram_quantile(0.99, sum(rate(tollgate_check_duration_seconds_bucket[5m:1m])) by (le, transport))`,
			selectors: []string{`tollgate_check_duration_seconds_bucket`},
			grouping:  []string{"le", "transport"},
		},
		"binary operators, offset, on and a Grafana variable": {
			expr:      "sum(rate(a_total{policy=~\"$policy\"}[1h] offset 5m)) > 3 * b\nand on (instance) c{x!='y'} unless d == bool 1e3",
			selectors: []string{`a_total{policy=~"$policy"}`, `b`, `c{x!="y"}`, `d`},
			grouping:  []string{"instance"},
		},
		"strings with escapes and braces": {
			expr:      `count_values("v", x{msg="a \"}\" b"}) or topk(5, y) or ${__name}`,
			selectors: []string{`x{msg="a \"}\" b"}`, `y`},
		},
		"grafana's label_values": {
			expr:      `label_values(tollgate_decisions_total{mode="enforce"}, policy)`,
			selectors: []string{`tollgate_decisions_total{mode="enforce"}`},
			grouping:  []string{"policy"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			q, err := parsePromQL(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range q.selectors {
				got = append(got, s.String())
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.selectors) || fmt.Sprint(q.grouping) != fmt.Sprint(tc.grouping) {
				t.Errorf("selectors %q grouping %q, want %q %q", got, q.grouping, tc.selectors, tc.grouping)
			}
		})
	}
	for _, bad := range []string{`x{a="b"`, `x{a=b}`, `x{a}`, `sum by (a`, `x[5m`, `x{a="b}`} {
		if _, err := parsePromQL(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func (s promSelector) String() string {
	if len(s.matchers) == 0 {
		return s.metric
	}
	var ms []string
	for _, m := range s.matchers {
		ms = append(ms, fmt.Sprintf("%s%s%q", m.label, m.op, m.value))
	}
	return s.metric + "{" + strings.Join(ms, ",") + "}"
}

// A monitoringQuery is one PromQL expression of config/monitoring, and
// where it is.
type monitoringQuery struct{ where, expr string }

// prometheusRule is the part of a PrometheusRule the test reads.
type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// monitoringQueries returns every expression of the alerts and of the
// dashboard (panel targets and template variable queries), and the alert
// names; it fails on an alert without for, severity, summary or
// description.
func monitoringQueries(t *testing.T) ([]monitoringQuery, []string) {
	t.Helper()
	var queries []monitoringQuery
	var alerts []string
	b, err := os.ReadFile("../../config/monitoring/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rule prometheusRule
	if err := yaml.UnmarshalStrict(b, &rule); err != nil {
		t.Fatalf("prometheusrule.yaml: %v", err)
	}
	if rule.APIVersion != "monitoring.coreos.com/v1" || rule.Kind != "PrometheusRule" {
		t.Fatalf("prometheusrule.yaml is a %s %s", rule.APIVersion, rule.Kind)
	}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.For == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %q lacks a name, for, severity, summary or description", r.Alert)
			}
			alerts = append(alerts, r.Alert)
			queries = append(queries, monitoringQuery{"alert " + r.Alert, r.Expr})
		}
	}

	b, err = os.ReadFile("../../config/monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries = append(queries, monitoringQuery{"panel " + p.Title, tg.Expr})
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("dashboard variable %s: %v", v.Name, err)
		}
		queries = append(queries, monitoringQuery{"variable " + v.Name, q.Query})
	}
	return queries, alerts
}

// targetLabels are the labels Prometheus adds to every scraped series
// (the ServiceMonitor's target and Kubernetes labels).
var targetLabels = []string{"job", "instance", "namespace", "pod", "service", "container", "endpoint"}

// TestMonitoringQueriesExist: every metric, label and label value that
// config/monitoring's alerts and dashboard query is in a real scrape of a
// running tollgate (Redis store, remote key sets, policies in every
// state), and the alerts the issue asks for are there.
func TestMonitoringQueriesExist(t *testing.T) {
	queries, alerts := monitoringQueries(t)
	for _, want := range []string{"TollgateQuotaStoreDown", "TollgateJWKSStale", "TollgatePoliciesNotReady", "TollgateDenyRateSpike"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s", want)
		}
	}
	h := startScrapeHarness(t)
	text := h.scrape(`tollgate_jwks_fetches_total{result="error"`, `tollgate_ratelimit_denials_total{`)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range queries {
		for _, problem := range checkQuery(q.expr, families) {
			t.Errorf("%s: %s\n\t%s", q.where, problem, q.expr)
		}
	}
}

// checkQuery returns what expr queries that families do not have.
func checkQuery(expr string, families map[string]*dto.MetricFamily) []string {
	q, err := parsePromQL(expr)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	read := map[string]bool{} // labels of the series the query reads
	for _, l := range targetLabels {
		read[l] = true
	}
	for _, sel := range q.selectors {
		f, labels := lookupFamily(sel.metric, families)
		if f == nil {
			problems = append(problems, fmt.Sprintf("metric %s is not served", sel.metric))
			continue
		}
		for l := range labels {
			read[l] = true
		}
		for _, m := range sel.matchers {
			switch {
			case slices.Contains(targetLabels, m.label):
			case labels[m.label] == nil:
				problems = append(problems, fmt.Sprintf("%s has no label %s", sel.metric, m.label))
			case m.op == "=" && !strings.Contains(m.value, "$") && !labels[m.label][m.value]:
				problems = append(problems, fmt.Sprintf("%s has no series with %s=%q", sel.metric, m.label, m.value))
			}
		}
	}
	for _, l := range q.grouping {
		if !read[l] {
			problems = append(problems, fmt.Sprintf("it groups or matches by %s, which none of its series has", l))
		}
	}
	return problems
}

// lookupFamily returns the family a metric name belongs to (a histogram's
// _bucket, _sum and _count included) and the values of each label of its
// series; nil when no family has it.
func lookupFamily(name string, families map[string]*dto.MetricFamily) (*dto.MetricFamily, map[string]map[string]bool) {
	f, suffix := families[name], ""
	if f == nil {
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, s); ok && families[base] != nil &&
				(families[base].GetType() == dto.MetricType_HISTOGRAM || families[base].GetType() == dto.MetricType_SUMMARY) {
				f, suffix = families[base], s
			}
		}
	}
	if f == nil {
		return nil, nil
	}
	labels := map[string]map[string]bool{}
	for _, m := range f.GetMetric() {
		for _, lp := range m.GetLabel() {
			if labels[lp.GetName()] == nil {
				labels[lp.GetName()] = map[string]bool{}
			}
			labels[lp.GetName()][lp.GetValue()] = true
		}
	}
	if suffix == "_bucket" {
		labels["le"] = map[string]bool{}
	}
	return f, labels
}
