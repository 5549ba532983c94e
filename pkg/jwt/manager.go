package jwt

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/token"
)

// Observer receives events for metrics. Implementations must be safe for
// concurrent use and cheap: CacheLookup runs on the request path. Rejected
// tokens are not reported here: the reason of each is in the decision it
// causes, and the decision's recorder counts it (a missing token never
// reaches Verify).
type Observer interface {
	// JWKSFetch reports one fetch of a remote key set (or discovery
	// document) at uri; err is nil on success.
	JWKSFetch(uri string, err error)
	// CacheLookup reports a verified-token cache lookup.
	CacheLookup(hit bool)
}

type nopObserver struct{}

func (nopObserver) JWKSFetch(string, error) {}
func (nopObserver) CacheLookup(bool)        {}

// Options configures a Manager. The zero value is usable.
type Options struct {
	// HTTPClient fetches remote JWKS and discovery documents. Nil means a
	// client with a 5 s timeout that never connects to link-local or cloud
	// metadata addresses (checked on the resolved address at dial time)
	// and uses no proxy. A client given here is used as it is (tests,
	// validate's offline client); AllowedHosts applies either way. Every
	// request also carries a 5 s deadline.
	HTTPClient *http.Client
	// Resolver resolves key hosts for the default client. Nil means
	// net.DefaultResolver.
	Resolver *net.Resolver
	// AllowedHosts, when not empty, are the host globs (CheckHostGlob) key
	// URLs may name: jwksURI, discovery issuers and the jwks_uri of their
	// documents, betterAuth base URLs, and every redirect. Serve's
	// --jwks-allowed-hosts.
	AllowedHosts []string
	// Secrets resolves HS secrets; required only by configs with a Secret.
	Secrets SecretResolver
	// CacheSize bounds the verified-token cache: 0 means DefaultCacheSize,
	// a negative value disables the cache (so a "--token-cache-size 0" flag
	// maps to -1).
	CacheSize int
	// Now is the clock for token validity and refresh rate limits. Nil means
	// time.Now.
	Now func() time.Time
	// Logger receives operational logs (JWKS fetches, skipped keys, secret
	// problems). It never receives tokens. Nil discards.
	Logger *slog.Logger
	// Observer receives metric events. Nil means none.
	Observer Observer
	// SecretPollInterval is how often resolved secrets are re-read so that
	// a rotation revokes cached tokens of the old secret. 0 means 1 s.
	SecretPollInterval time.Duration
}

// Manager owns what is shared between policies and policy snapshots: remote
// key sets by URI (a recompiled policy neither refetches nor loses them), the
// HTTP client, the secret resolver, the verified-token cache and the metric
// hooks. Create one per process with NewManager and stop it with Close.
type Manager struct {
	client     *http.Client
	hosts      hostGuard
	secrets    SecretResolver
	now        func() time.Time
	log        *slog.Logger
	obs        Observer
	cache      *tokenCache // nil when disabled
	secretPoll time.Duration

	ctx    context.Context // cancelled by Close; parent of background work
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // mu guards the fields below
	remotes map[string]*remoteSource
	secretS map[SecretRef]*secretSource
	inline  map[string]*keySet
	vids    map[string]uint64
	nextVID uint64
	// stops cancels the background work of each remote ("jwks URI",
	// "discovery URI") and secret (SecretRef.String()) source.
	stops  map[string]context.CancelFunc
	closed bool
}

// NewManager returns a Manager configured by opts.
func NewManager(opts Options) *Manager {
	m := &Manager{
		client:     opts.HTTPClient,
		secrets:    opts.Secrets,
		now:        opts.Now,
		log:        opts.Logger,
		obs:        opts.Observer,
		secretPoll: opts.SecretPollInterval,
		remotes:    make(map[string]*remoteSource),
		secretS:    make(map[SecretRef]*secretSource),
		inline:     make(map[string]*keySet),
		vids:       make(map[string]uint64),
		stops:      make(map[string]context.CancelFunc),
	}
	m.hosts = hostGuard{globs: append([]string(nil), opts.AllowedHosts...)}
	if m.client == nil {
		m.client = newFetchClient(opts.Resolver)
	} else {
		c := *m.client
		m.client = &c
	}
	m.client.CheckRedirect = m.hosts.checkRedirect
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.obs == nil {
		m.obs = nopObserver{}
	}
	if m.secretPoll <= 0 {
		m.secretPoll = time.Second
	}
	switch {
	case opts.CacheSize == 0:
		m.cache = newTokenCache(DefaultCacheSize)
	case opts.CacheSize > 0:
		m.cache = newTokenCache(opts.CacheSize)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m
}

// Close stops background refreshers and waits for them. Verifiers keep
// working with the keys they have but no longer refresh.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}

// Verifier validates cfg and returns a Verifier for it. It is cheap when
// the key source already exists: remote sources are shared by URI, secret
// sources by reference. A new remote source starts fetching in the
// background; Verifier does not wait for it (see Verifier.WaitKeys).
func (m *Manager) Verifier(cfg Config) (*Verifier, error) {
	algs, err := cfg.Validate()
	if err != nil {
		return nil, err
	}
	v := &Verifier{
		m:         m,
		issuer:    cfg.Issuer,
		audiences: append([]string(nil), cfg.Audiences...),
		skew:      cfg.ClockSkew,
		allowed:   make(map[string]bool, len(algs)),
		schema:    token.NewClaimSchema(cfg.Claims),
	}
	for _, a := range algs {
		v.allowed[a] = true
	}
	fp := fingerprint(&cfg, algs)

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("jwt: manager closed")
	}
	vid, ok := m.vids[fp]
	if !ok {
		m.nextVID++
		vid = m.nextVID
		m.vids[fp] = vid
	}
	v.vid = vid

	switch {
	case cfg.InlineJWKS != "":
		set, ok := m.inline[cfg.InlineJWKS]
		if !ok {
			keys, skipped, err := parseJWKS([]byte(cfg.InlineJWKS))
			if err != nil {
				return nil, fmt.Errorf("%w: inline jwks: %w", ErrInvalidConfig, err)
			}
			m.logSkipped("inline", skipped)
			if len(keys) == 0 {
				return nil, fmt.Errorf("jwt: inline jwks: %w", ErrNoKeys)
			}
			set = newKeySet(keys)
			m.inline[cfg.InlineJWKS] = set
		}
		v.src = staticSource{set: set}
	case cfg.Secret != nil:
		if m.secrets == nil {
			return nil, fmt.Errorf("%w: secretRef %s but no secret resolver configured", ErrInvalidConfig, cfg.Secret)
		}
		s, ok := m.secretS[*cfg.Secret]
		if !ok {
			s = newSecretSource(m, *cfg.Secret)
			m.secretS[*cfg.Secret] = s
			m.startLocked(cfg.Secret.String(), s.poll)
		}
		v.src = s
	case cfg.JWKSURI != "":
		v.src = m.remoteLocked(cfg.JWKSURI, false)
	case cfg.Discovery:
		v.src = m.remoteLocked(cfg.Issuer, true)
	}
	return v, nil
}

// remoteLocked returns the shared remote source for uri, starting it if
// needed. m.mu must be held.
func (m *Manager) remoteLocked(uri string, discovery bool) *remoteSource {
	name := "jwks " + uri
	if discovery {
		name = "discovery " + uri
	}
	if s, ok := m.remotes[name]; ok {
		return s
	}
	s := newRemoteSource(m, uri, discovery)
	m.remotes[name] = s
	m.startLocked(name, s.run)
	return s
}

// startLocked runs fn in a goroutine tracked by Close and stoppable by
// Retain under name. m.mu must be held.
func (m *Manager) startLocked(name string, fn func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(m.ctx)
	m.stops[name] = cancel
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fn(ctx)
	}()
}

// Retain keeps the key sources, and verified-token cache namespaces, of
// cfgs and drops every other: remote key sets stop refreshing, secrets stop
// being polled, inline key sets are forgotten. Call it after a new policy
// set is serving, with that set's configs, so that policies that were
// removed do not keep fetching for the life of the process. Verifiers of
// dropped sources keep the keys they had.
func (m *Manager) Retain(cfgs []Config) {
	keepSources := make(map[string]bool, len(cfgs))
	keepInline := make(map[string]bool)
	keepVIDs := make(map[string]bool, len(cfgs))
	for i := range cfgs {
		c := &cfgs[i]
		switch {
		case c.InlineJWKS != "":
			keepInline[c.InlineJWKS] = true
		case c.Secret != nil:
			keepSources[c.Secret.String()] = true
		case c.JWKSURI != "":
			keepSources["jwks "+c.JWKSURI] = true
		case c.Discovery:
			keepSources["discovery "+c.Issuer] = true
		}
		if algs, err := c.Validate(); err == nil {
			keepVIDs[fingerprint(c, algs)] = true
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.remotes {
		if !keepSources[name] {
			m.stopLocked(name)
			delete(m.remotes, name)
		}
	}
	for ref := range m.secretS {
		if !keepSources[ref.String()] {
			m.stopLocked(ref.String())
			delete(m.secretS, ref)
		}
	}
	for doc := range m.inline {
		if !keepInline[doc] {
			delete(m.inline, doc)
		}
	}
	for fp := range m.vids {
		if !keepVIDs[fp] {
			delete(m.vids, fp)
		}
	}
}

// stopLocked cancels the background work of a source. m.mu must be held.
func (m *Manager) stopLocked(name string) {
	if cancel, ok := m.stops[name]; ok {
		cancel()
		delete(m.stops, name)
	}
}

func (m *Manager) logSkipped(source string, skipped []skippedKey) {
	for _, s := range skipped {
		m.log.Warn("jwt: skipped key in key set", "source", source, "kid", s.Kid, "reason", s.Reason)
	}
}

// keysRevoked is called by sources after a refresh revoked keys.
func (m *Manager) keysRevoked() {
	if m.cache != nil {
		m.cache.dropRevoked()
	}
}
