// Package deploy names the Kubernetes Service that the Helm chart and the
// kustomize base create and that every proxy example (config/envoy,
// config/istio, config/nginx, config/caddy) points at. The tests of both
// sides compare against these constants, so a renamed Service or port fails
// a test instead of a user's install.
package deploy

const (
	// ServiceName is the name of the tollgate Service.
	ServiceName = "tollgate"
	// Namespace is the namespace the chart and the examples install into.
	Namespace = "tollgate-system"
	// ServiceHost is the Service's fully qualified in-cluster DNS name, the
	// host every example uses.
	ServiceHost = ServiceName + "." + Namespace + ".svc.cluster.local"
)

// Service port names, SPEC's "Service (grpc, http, metrics)". Istio selects
// a port's protocol by its name (grpc, http, or a grpc-/http- prefix) or by
// its appProtocol, which the Service sets on every port (metrics: http), so
// the names are part of the contract, not decoration.
const (
	PortGRPC    = "grpc"    // Envoy ext_authz v3 gRPC (serve --grpc-addr)
	PortHTTP    = "http"    // HTTP forward-auth (serve --http-addr)
	PortMetrics = "metrics" // Prometheus /metrics (serve --metrics-addr)
)

// A Port is one port of the tollgate Service.
type Port struct {
	// Name is the Service port name (and the container port name).
	Name string
	// Port is the port number, the same on the Service and the container.
	Port int32
	// Flag is the `tollgate serve` flag that binds it.
	Flag string
}

// Ports returns the Service's ports, in the order the chart lists them.
func Ports() []Port {
	return []Port{
		{Name: PortGRPC, Port: 50051, Flag: "--grpc-addr"},
		{Name: PortHTTP, Port: 5001, Flag: "--http-addr"},
		{Name: PortMetrics, Port: 8080, Flag: "--metrics-addr"},
	}
}

// PortNamed returns the port called name, and whether there is one.
func PortNamed(name string) (Port, bool) {
	for _, p := range Ports() {
		if p.Name == name {
			return p, true
		}
	}
	return Port{}, false
}
