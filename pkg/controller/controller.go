package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	crcontroller "sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/policyset"
)

// PolicySet is the policy set the controller feeds and reads statuses
// from. A *policyset.Set satisfies it.
type PolicySet interface {
	Apply(obj *v1alpha1.AuthPolicy) policyset.Status
	Delete(namespace, name string)
	Status(namespace, name string) (policyset.Status, bool)
	Flush(ctx context.Context) error
}

var _ PolicySet = (*policyset.Set)(nil)

// Defaults of Options.
const (
	DefaultLeaderElectionID = "tollgate-status"
	DefaultLeaseDuration    = 15 * time.Second
	DefaultRenewDeadline    = 10 * time.Second
	DefaultRetryPeriod      = 2 * time.Second
	// DefaultQPS and DefaultBurst bound the client's requests to the API
	// server (mostly status patches: a first start with many policies
	// writes one per policy).
	DefaultQPS   = 50
	DefaultBurst = 100
)

// Options configures a Controller.
type Options struct {
	// Config reaches the API server.
	Config *rest.Config
	// Namespace restricts the watch (AuthPolicies and Secrets) to one
	// namespace; empty watches all.
	Namespace string
	// Set receives the policies; required.
	Set PolicySet
	// Secrets is filled from the Secret informer; give the same cache to
	// the jwt.Manager as its SecretResolver. Nil makes one (see Secrets).
	Secrets *SecretCache
	// SecretSelector restricts the Secrets cached (and so the ones a
	// secretRef can name) to those with matching labels. Nil or empty means
	// every Opaque Secret of the watched namespaces.
	SecretSelector labels.Selector

	// LeaderElect makes status writing wait for the Lease; false writes
	// status from this process unconditionally.
	LeaderElect bool
	// LeaderElectionNamespace and LeaderElectionID name the Lease;
	// required with LeaderElect (the ID defaults to DefaultLeaderElectionID).
	LeaderElectionNamespace string
	LeaderElectionID        string
	// Identity of this replica in the Lease. Default: hostname_uuid.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod tune the election
	// (client-go's meaning). Defaults 15s, 10s, 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	// OnReady is called once, when the caches have synced and the first
	// list of policies is in a published snapshot.
	OnReady func()
	// Registerer receives tollgate_status_writes_total and
	// tollgate_status_leader. Nil registers nowhere.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock for condition transition times. Nil: time.Now.
	Now func() time.Time
}

// A Controller reconciles AuthPolicy objects into a policy set (on every
// replica) and writes their status (on the leader only).
type Controller struct {
	mgr     manager.Manager
	log     *slog.Logger
	set     PolicySet
	secrets *SecretCache
	start   *startup
	notify  *notifier
	leader  *leader // nil without leader election
	// secretsReg is the Secret cache's informer registration.
	secretsReg    toolscache.ResourceEventHandlerRegistration
	secretsSynced chan struct{}
	ready         atomic.Bool
	onReady       func()
}

// New builds a Controller; Run starts it.
func New(opts Options) (*Controller, error) {
	if opts.Config == nil || opts.Set == nil {
		return nil, errors.New("controller: Config and Set are required")
	}
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	c := &Controller{
		log:           opts.Logger,
		set:           opts.Set,
		secrets:       opts.Secrets,
		start:         newStartup(),
		notify:        &notifier{},
		secretsSynced: make(chan struct{}),
		onReady:       opts.OnReady,
	}
	c.secrets.scope = secretScope(opts)

	writes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_status_writes_total",
		Help: "AuthPolicy status patches sent by this replica, by result (success, error); only the leader writes.",
	}, []string{"result"})
	leaderGauge := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tollgate_status_leader",
		Help: "1 while this replica holds the status-writer Lease (always 1 without leader election).",
	})
	writes.WithLabelValues("success")
	writes.WithLabelValues("error")
	if opts.Registerer != nil {
		for _, col := range []prometheus.Collector{writes, leaderGauge} {
			if err := opts.Registerer.Register(col); err != nil {
				return nil, fmt.Errorf("controller: register metrics: %w", err)
			}
		}
	}

	cfg := rest.CopyConfig(opts.Config)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = DefaultQPS, DefaultBurst
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("controller: scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("controller: scheme: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme,
		// The kinds are known: a fixed mapper needs no discovery, so the
		// process starts (unready) while the API server is unreachable.
		MapperProvider:         func(*rest.Config, *http.Client) (meta.RESTMapper, error) { return restMapper(), nil },
		Logger:                 logr.FromSlogHandler(opts.Logger.Handler()),
		Cache:                  cacheOptions(opts),
		Metrics:                metricsserver.Options{BindAddress: "0"}, // tollgate's /metrics serves them
		HealthProbeBindAddress: "0",                                     // folded into tollgate's /healthz and /readyz
		// Leader election is ours (see leader): losing the Lease must not
		// stop the process that serves decisions.
		LeaderElection: false,
		Controller: config.Controller{
			// Two tollgates may share a process in tests.
			SkipNameValidation: ptr(true),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("controller: manager: %w", err)
	}
	c.mgr = mgr

	leading := func() bool { return true }
	if opts.LeaderElect {
		if c.leader, err = newLeader(cfg, &opts, leaderGauge, opts.Logger); err != nil {
			return nil, fmt.Errorf("controller: %w", err)
		}
		c.leader.onStartedLeading = c.requeueAllStatus
		leading = c.leader.Leading
		if err := mgr.Add(c.leader); err != nil {
			return nil, fmt.Errorf("controller: %w", err)
		}
	} else {
		leaderGauge.Set(1)
	}

	if err := c.setup(mgr, opts, leading, writes); err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	return c, nil
}

func (o *Options) defaults() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Secrets == nil {
		o.Secrets = NewSecretCache()
	}
	if o.LeaderElectionID == "" {
		o.LeaderElectionID = DefaultLeaderElectionID
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.RenewDeadline <= 0 {
		o.RenewDeadline = DefaultRenewDeadline
	}
	if o.RetryPeriod <= 0 {
		o.RetryPeriod = DefaultRetryPeriod
	}
	if o.Identity == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "tollgate"
		}
		o.Identity = host + "_" + uuid.NewString()
	}
	if o.LeaderElect && o.LeaderElectionNamespace == "" {
		return errors.New("controller: leader election needs a namespace for its Lease")
	}
	return nil
}

// restMapper maps the kinds the controller reads and writes through its
// client and cache.
func restMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper([]schema.GroupVersion{v1alpha1.GroupVersion, corev1.SchemeGroupVersion})
	m.Add(v1alpha1.GroupVersion.WithKind("AuthPolicy"), meta.RESTScopeNamespace)
	m.Add(corev1.SchemeGroupVersion.WithKind("Secret"), meta.RESTScopeNamespace)
	return listKindMapper{m}
}

// listKindMapper maps "<Kind>List" as Kind: controller-runtime's
// namespace-scoped cache (--namespace) looks up a List's scope by the list
// kind, which no API server publishes.
type listKindMapper struct{ meta.RESTMapper }

func (m listKindMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	rm, err := m.RESTMapper.RESTMapping(gk, versions...)
	if err != nil && strings.HasSuffix(gk.Kind, "List") {
		gk.Kind = strings.TrimSuffix(gk.Kind, "List")
		return m.RESTMapper.RESTMapping(gk, versions...)
	}
	return rm, err
}

// cacheOptions scopes the informers: the watched namespace, Opaque Secrets
// only (never service-account tokens, TLS keys, registry credentials or
// Helm release records), an optional label selector, and no managed fields
// kept in memory.
func cacheOptions(opts Options) cache.Options {
	secrets := cache.ByObject{
		Field:     fields.OneTermEqualSelector("type", string(corev1.SecretTypeOpaque)),
		Transform: stripSecret,
	}
	if opts.SecretSelector != nil && !opts.SecretSelector.Empty() {
		secrets.Label = opts.SecretSelector
	}
	co := cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject:         map[client.Object]cache.ByObject{&corev1.Secret{}: secrets},
	}
	if opts.Namespace != "" {
		co.DefaultNamespaces = map[string]cache.Config{opts.Namespace: {}}
	}
	return co
}

// secretScope describes the Secrets a secretRef can name, for messages.
func secretScope(opts Options) string {
	var parts []string
	if opts.Namespace != "" {
		parts = append(parts, "namespace "+opts.Namespace)
	}
	parts = append(parts, "type Opaque")
	if opts.SecretSelector != nil && !opts.SecretSelector.Empty() {
		parts = append(parts, "labels "+opts.SecretSelector.String())
	}
	return " (tollgate reads Secrets of " + strings.Join(parts, ", ") + ")"
}

func (c *Controller) setup(mgr manager.Manager, opts Options, leading func() bool, writes *prometheus.CounterVec) error {
	ctx := context.Background()
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.AuthPolicy{}, secretRefIndex, secretRefName); err != nil {
		return fmt.Errorf("index %s: %w", secretRefIndex, err)
	}
	inf, err := mgr.GetCache().GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return fmt.Errorf("secret informer: %w", err)
	}
	if c.secretsReg, err = inf.AddEventHandler(c.secrets.handler()); err != nil {
		return fmt.Errorf("secret informer: %w", err)
	}

	serving := &servingReconciler{cache: mgr.GetClient(), set: c.set, start: c.start, secretsSynced: c.secretsSynced}
	err = builder.ControllerManagedBy(mgr).
		Named("authpolicy").
		// A status write changes no generation and needs no recompile.
		For(&v1alpha1.AuthPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(policiesForSecret(mgr.GetClient()))).
		WithOptions(crcontroller.Options{
			// Every replica serves; the set serializes applies anyway.
			NeedLeaderElection:      ptr(false),
			MaxConcurrentReconciles: 1,
		}).
		Complete(serving)
	if err != nil {
		return fmt.Errorf("serving controller: %w", err)
	}

	status := &statusReconciler{
		cache:    mgr.GetClient(),
		status:   mgr.GetClient().Status(),
		set:      c.set,
		leading:  leading,
		recorder: mgr.GetEventRecorder("tollgate"),
		now:      opts.Now,
		writes:   writes,
	}
	err = builder.ControllerManagedBy(mgr).
		Named("authpolicy-status").
		For(&v1alpha1.AuthPolicy{}).
		WatchesRawSource(c.notify).
		WithOptions(crcontroller.Options{
			// Runs everywhere; writes only while leading (see leader).
			NeedLeaderElection:      ptr(false),
			MaxConcurrentReconciles: 4,
		}).
		Complete(status)
	if err != nil {
		return fmt.Errorf("status controller: %w", err)
	}
	return mgr.Add(manager.RunnableFunc(c.waitReady))
}

// waitReady marks the controller ready once the caches have synced and
// every policy of the first list is in a published snapshot.
func (c *Controller) waitReady(ctx context.Context) error {
	if !c.mgr.GetCache().WaitForCacheSync(ctx) {
		return nil // stopping
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), c.secretsReg.HasSynced) {
		return nil
	}
	close(c.secretsSynced)
	var list v1alpha1.AuthPolicyList
	if err := c.mgr.GetCache().List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("list AuthPolicies: %w", err)
	}
	gens := make(map[types.NamespacedName]int64, len(list.Items))
	for i := range list.Items {
		gens[client.ObjectKeyFromObject(&list.Items[i])] = list.Items[i].Generation
	}
	select {
	case <-c.start.listed(gens):
	case <-ctx.Done():
		return nil
	}
	if err := c.set.Flush(ctx); err != nil {
		return nil
	}
	c.ready.Store(true)
	c.log.Info("AuthPolicies synced from the API server; serving them", "policies", len(gens))
	if c.onReady != nil {
		c.onReady()
	}
	return nil
}

// requeueAllStatus looks at every policy's status again (on becoming the
// leader: the previous leader may have left some unwritten).
func (c *Controller) requeueAllStatus(ctx context.Context) {
	var list v1alpha1.AuthPolicyList
	if err := c.mgr.GetCache().List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		c.log.Error("list AuthPolicies for status", "error", err)
		return
	}
	for i := range list.Items {
		c.notify.notify(list.Items[i].Namespace, list.Items[i].Name)
	}
}

// Run runs the controller until ctx ends. It returns an error when it
// cannot start (for example when the caches never sync); once started, an
// unreachable API server only delays changes: the set keeps what it has.
func (c *Controller) Run(ctx context.Context) error {
	if err := c.mgr.Start(ctx); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	return nil
}

// Ready reports whether the caches synced and the first list of policies
// is served. It stays true when the API server becomes unreachable.
func (c *Controller) Ready() bool { return c.ready.Load() }

// Leading reports whether this replica writes status.
func (c *Controller) Leading() bool { return c.leader == nil || c.leader.Leading() }

// Secrets returns the cache that resolves secretRefs.
func (c *Controller) Secrets() *SecretCache { return c.secrets }

// StatusChanged requeues a policy whose status changed in the set. Give it
// to the set's OnStatus; it never blocks.
func (c *Controller) StatusChanged(namespace, name string) { c.notify.notify(namespace, name) }

func ptr[T any](v T) *T { return &v }
