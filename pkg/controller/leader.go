package controller

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// A leader campaigns for the status-writer Lease for as long as the
// process runs. Unlike controller-runtime's manager-wide leader election,
// losing the Lease (say, while the API server is unreachable) does not stop
// the process: this replica only stops writing status, keeps serving
// decisions, and campaigns again. The Lease is released on shutdown.
type leader struct {
	lock                resourcelock.Interface
	lease, renew, retry time.Duration
	log                 *slog.Logger
	gauge               prometheus.Gauge
	leading             atomic.Bool
	// onStartedLeading runs when this replica gains the Lease.
	onStartedLeading func(ctx context.Context)
}

func newLeader(cfg *rest.Config, opts *Options, gauge prometheus.Gauge, log *slog.Logger) (*leader, error) {
	// One hung request must not cost the Lease: as client-go's
	// NewFromKubeconfig does, time out well within the renew deadline.
	lcfg := rest.CopyConfig(cfg)
	lcfg.Timeout = max(time.Second, opts.RenewDeadline/2)
	lcfg = rest.AddUserAgent(lcfg, "tollgate-leader-election")
	coord, err := coordinationv1.NewForConfig(lcfg)
	if err != nil {
		return nil, fmt.Errorf("leader election client: %w", err)
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, opts.LeaderElectionNamespace, opts.LeaderElectionID,
		nil, coord, resourcelock.ResourceLockConfig{Identity: opts.Identity})
	if err != nil {
		return nil, fmt.Errorf("leader election lock: %w", err)
	}
	return &leader{
		lock: lock, lease: opts.LeaseDuration, renew: opts.RenewDeadline, retry: opts.RetryPeriod,
		log: log, gauge: gauge,
	}, nil
}

// Leading reports whether this replica holds the Lease.
func (l *leader) Leading() bool { return l.leading.Load() }

// Start campaigns until ctx ends. It implements manager.Runnable.
func (l *leader) Start(ctx context.Context) error {
	// client-go's elector logs through the context's logger.
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(l.log.Handler()))
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            l.lock,
			LeaseDuration:   l.lease,
			RenewDeadline:   l.renew,
			RetryPeriod:     l.retry,
			ReleaseOnCancel: true,
			Name:            l.lock.Describe(),
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					l.leading.Store(true)
					l.gauge.Set(1)
					l.log.Info("leading: this replica writes AuthPolicy status", "lease", l.lock.Describe(), "identity", l.lock.Identity())
					if l.onStartedLeading != nil {
						l.onStartedLeading(ctx)
					}
				},
				OnStoppedLeading: func() {
					if l.leading.Swap(false) {
						l.gauge.Set(0)
						l.log.Info("no longer leading: another replica writes status", "lease", l.lock.Describe())
					}
				},
				OnNewLeader: func(id string) {
					if id != l.lock.Identity() {
						l.log.Info("status writer elected", "lease", l.lock.Describe(), "leader", id)
					}
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		// Run returns when ctx ends or the Lease is lost; then campaign
		// again.
		le.Run(ctx)
	}
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: the
// campaign itself runs on every replica.
func (l *leader) NeedLeaderElection() bool { return false }
