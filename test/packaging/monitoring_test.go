package packaging_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// TestMonitoringManifests: `kubectl apply -k config/monitoring` installs
// the PrometheusRule and the dashboard as a ConfigMap for Grafana's
// sidecar, and the chart's prometheusRule.enabled renders the same alerts
// (charts/tollgate/files is a copy that make manifests keeps current).
// pkg/server's TestMonitoringQueriesExist checks what they query.
func TestMonitoringManifests(t *testing.T) {
	dir := filepath.Join(repoRoot, "config", "monitoring")
	b, err := os.ReadFile(filepath.Join(dir, "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rule map[string]any
	if err := yaml.Unmarshal(b, &rule); err != nil {
		t.Fatal(err)
	}
	dashboard, err := os.ReadFile(filepath.Join(dir, "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}

	out, err := kubectl(t, "kustomize", dir)
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeObjects(t, out)
	if got := find(t, objs, "PrometheusRule", "tollgate"); !reflect.DeepEqual(got.Object["spec"], rule["spec"]) {
		t.Error("kustomize renders other alerts than prometheusrule.yaml")
	}
	cm := find(t, objs, "ConfigMap", "tollgate-dashboard")
	if data, _, _ := unstructured.NestedString(cm.Object, "data", "dashboard.json"); data != string(dashboard) || cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("the dashboard ConfigMap: labels %v, dashboard.json %d bytes of %d", cm.GetLabels(), len(data), len(dashboard))
	}

	for _, o := range renderChart(t) {
		if o.GetKind() == "PrometheusRule" {
			t.Error("the chart renders a PrometheusRule by default")
		}
	}
	chartRule := find(t, renderChart(t, "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.labels.release=prometheus"), "PrometheusRule", release)
	if !reflect.DeepEqual(chartRule.Object["spec"], rule["spec"]) {
		t.Error("the chart's PrometheusRule differs from config/monitoring/prometheusrule.yaml: run make manifests")
	}
	if chartRule.GetLabels()["release"] != "prometheus" || chartRule.GetNamespace() != namespace {
		t.Errorf("the chart's PrometheusRule: labels %v, namespace %q", chartRule.GetLabels(), chartRule.GetNamespace())
	}
}
