// Package controller reconciles AuthPolicy objects from the Kubernetes API
// server into tollgate's policy set and reports each policy's Ready
// condition.
//
// Every replica runs the serving reconciler (no leader election): it feeds
// its own policy set from its own informer cache, so no decision ever waits
// on the API server, and a replica keeps serving its last synced policies
// while the API server is unreachable. Only the replica holding the Lease
// writes status and Events.
//
// The RBAC below is all tollgate needs; `make manifests` writes it to
// config/rbac.
//
// +kubebuilder:rbac:groups=tollgate.dev,resources=authpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=tollgate.dev,resources=authpolicies/status,verbs=update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=system,resources=leases,verbs=get;create;update
package controller
