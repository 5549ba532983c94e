package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/tollgate-dev/tollgate/pkg/controller"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
)

// newController builds the AuthPolicy controller of opts.Kubernetes on the
// server's policy set, secret cache and metrics registry.
func (s *Server) newController(secrets *controller.SecretCache) error {
	copts := *s.opts.Kubernetes
	copts.Set = s.policies
	copts.Secrets = secrets
	copts.Registerer = s.metrics.Registry
	copts.Logger = s.log.With("source", "kubernetes")
	copts.OnReady = s.markReady
	c, err := controller.New(copts)
	if err != nil {
		return err
	}
	s.kube = c
	return nil
}

// runController runs the controller until ctx ends; a controller that
// cannot start is reported on errc.
func (s *Server) runController(ctx context.Context, errc chan<- error) {
	if err := s.kube.Run(ctx); err != nil && ctx.Err() == nil {
		errc <- err
	}
}

// gatherer is what /metrics serves: tollgate's registry, plus
// controller-runtime's (reconciles, work queues, client-go requests,
// leader election) when the controller runs.
func (s *Server) gatherer() prometheus.Gatherer {
	if s.kube == nil {
		return s.metrics.Registry
	}
	return mergedGatherer{s.metrics.Registry, ctrlmetrics.Registry}
}

// mergedGatherer gathers primary, then the families of extra that primary
// does not have, leaving out extra's Go runtime and process families:
// controller-runtime's registry has its own (larger) Go and process
// collectors, and tollgate's already reports them.
type mergedGatherer struct{ primary, extra prometheus.Gatherer }

func (g mergedGatherer) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := g.primary.Gather()
	if err != nil {
		return mfs, err
	}
	have := make(map[string]bool, len(mfs))
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	more, err := g.extra.Gather()
	for _, mf := range more {
		name := mf.GetName()
		if !have[name] && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			mfs = append(mfs, mf)
		}
	}
	slices.SortFunc(mfs, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return mfs, err
}

// kubeHealth is the controller's part of the /readyz body.
type kubeHealth struct {
	// Synced is true once the caches synced and the first list is served;
	// it stays true while the API server is unreachable.
	Synced bool `json:"synced"`
	// Leader is true while this replica writes status.
	Leader bool `json:"leader"`
}

func (s *Server) kubeHealth() *kubeHealth {
	if s.kube == nil {
		return nil
	}
	return &kubeHealth{Synced: s.kube.Ready(), Leader: s.kube.Leading()}
}

// secretChain resolves a secretRef from the first resolver that has it
// (the --secrets-dir files, then the cluster's Secrets).
type secretChain []jwt.SecretResolver

var _ jwt.SecretResolver = secretChain(nil)

func (c secretChain) Secret(ctx context.Context, ref jwt.SecretRef) ([]byte, error) {
	var errs []error
	for _, r := range c {
		b, err := r.Secret(ctx, ref)
		if err == nil {
			return b, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("secret %s: %w", ref, errors.Join(errs...))
}
