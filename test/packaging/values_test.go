package packaging_test

import (
	"maps"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestChartValuesReachTheContainer: each value SPEC names for the chart
// (Redis address, cluster, password Secret; replicas; image; log level;
// default action), set alone under the name an operator would try first,
// renders and reaches the Deployment: the container's args, image or the
// replica count. Setting a Redis address alone selects the Redis store
// (SPEC lists no store value: the address is what says Redis).
func TestChartValuesReachTheContainer(t *testing.T) {
	for name, tc := range map[string]struct {
		set      []string
		args     []string // each must be among the container's args
		replicas int32    // when not 0
		image    string   // when not ""
	}{
		"redis.addr alone":              {set: []string{"redis.addr=redis:6379"}, args: []string{"--quota-store=redis", "--redis-addr=redis:6379"}},
		"redis.address alone":           {set: []string{"redis.address=redis:6379"}, args: []string{"--quota-store=redis", "--redis-addr=redis:6379"}},
		"redis.clusterAddrs alone":      {set: []string{"redis.clusterAddrs={a:6379,b:6379}"}, args: []string{"--quota-store=redis", "--redis-cluster-addrs=a:6379,b:6379"}},
		"redis.clusterAddresses alone":  {set: []string{"redis.clusterAddresses={a:6379,b:6379}"}, args: []string{"--quota-store=redis", "--redis-cluster-addrs=a:6379,b:6379"}},
		"redis.cluster with redis.addr": {set: []string{"redis.cluster=true", "redis.addr=seed:6379"}, args: []string{"--quota-store=redis", "--redis-cluster-addrs=seed:6379"}},
		"a Redis password Secret":       {set: []string{"redis.addr=redis:6379", "redis.passwordSecret.name=redis-auth"}, args: []string{"--quota-store=redis", "--redis-password-file=/etc/tollgate/redis/password"}},
		"memory by default":             {args: []string{"--quota-store=memory"}},
		"replicas":                      {set: []string{"replicas=5"}, replicas: 5},
		"replicaCount (helm create)":    {set: []string{"replicaCount=4"}, replicas: 4},
		"image":                         {set: []string{"image.repository=registry.test/tg", "image.tag=v9"}, image: "registry.test/tg:v9"},
		"log level":                     {set: []string{"logLevel=debug"}, args: []string{"--log-level=debug"}},
		"default action":                {set: []string{"defaultAction=allow"}, args: []string{"--default-action=allow"}},
	} {
		t.Run(name, func(t *testing.T) {
			var flags []string
			for _, s := range tc.set {
				flags = append(flags, "--set", s)
			}
			var dep appsv1.Deployment
			typed(t, find(t, renderChart(t, flags...), "Deployment", release), &dep)
			c := dep.Spec.Template.Spec.Containers[0]
			for _, a := range tc.args {
				if !slices.Contains(c.Args, a) {
					t.Errorf("--set %v: args %v lack %s", tc.set, c.Args, a)
				}
			}
			if tc.replicas != 0 && (dep.Spec.Replicas == nil || *dep.Spec.Replicas != tc.replicas) {
				t.Errorf("--set %v: replicas %v, want %d", tc.set, dep.Spec.Replicas, tc.replicas)
			}
			if tc.image != "" && c.Image != tc.image {
				t.Errorf("--set %v: image %s, want %s", tc.set, c.Image, tc.image)
			}
		})
	}
}

// TestServicePortNames: SPEC names the Service's ports grpc, http and
// metrics; the chart's and config/default's Service use those names, on
// the ports the serve flags bind by default.
func TestServicePortNames(t *testing.T) {
	want := map[string]int32{"grpc": 50051, "http": 5001, "metrics": 8080}
	for name, objs := range map[string][]*unstructured.Unstructured{
		"chart":          renderChart(t),
		"config/default": renderKustomize(t),
	} {
		var svc corev1.Service
		typed(t, find(t, objs, "Service", release), &svc)
		got := map[string]int32{}
		for _, p := range svc.Spec.Ports {
			got[p.Name] = p.Port
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: Service ports %v, want %v", name, got, want)
		}
	}
}
