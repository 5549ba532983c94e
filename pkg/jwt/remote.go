package jwt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tollgate-dev/tollgate/pkg/token"
)

// Remote key set limits and timings.
const (
	fetchTimeout     = 5 * time.Second  // per HTTP request
	maxDocumentBytes = 1 << 20          // JWKS and discovery response cap
	minRefresh       = time.Minute      // background refresh: Cache-Control freshness clamp
	maxRefresh       = time.Hour        //
	defaultRefresh   = 10 * time.Minute // without Cache-Control or Expires
	retryMin         = time.Second      // background retry backoff after a failure
	retryMax         = 30 * time.Second //
)

// UnknownKidInterval is the least time between two fetches of one JWKS
// caused by tokens naming a kid the set lacks (background refreshes do not
// count). A flood of such tokens costs
// at most one fetch per interval (concurrent callers share one), and a key
// the provider rotated in is accepted at most this long (plus one fetch)
// after it was published — SPEC promises 2 s.
const UnknownKidInterval = time.Second

// errThrottled means an on-demand refresh was skipped because another one
// started or completed less than UnknownKidInterval ago.
var errThrottled = errors.New("jwks refresh throttled")

// errNotLoaded means no fetch has finished yet.
var errNotLoaded = errors.New("jwks not loaded yet")

// remoteSource is a JWKS fetched over HTTP, directly or through OIDC
// discovery, shared by every Verifier that names it. A background goroutine
// refreshes it; unknown kids trigger rate-limited on-demand refreshes. A
// failed or empty fetch never replaces the keys already held.
type remoteSource struct {
	m         *Manager
	uri       string // JWKS URI, or the issuer for discovery
	discovery bool

	set atomic.Pointer[keySet] // nil until the first successful fetch
	sf  singleflight.Group     // one fetch at a time, shared by all callers

	mu          sync.Mutex // mu guards the fields below
	lastFetched time.Time  // completion of the last fetch attempt (m.now clock)
	lastErr     error      // result of the last attempt
	lastOK      time.Time  // completion of the last successful fetch
	// lastOnDemand is the start, then the completion, of the last
	// refresh for an unknown kid while keys were held (see throttled).
	lastOnDemand time.Time
	interval     time.Duration // freshness of the last success (Cache-Control)
}

func newRemoteSource(m *Manager, uri string, discovery bool) *remoteSource {
	return &remoteSource{m: m, uri: uri, discovery: discovery, interval: defaultRefresh}
}

// run is the background refresher: fetch now, then again when the last
// successful fetch (background or on demand) is as old as its
// Cache-Control freshness allows, retrying failures with capped
// exponential backoff.
func (s *remoteSource) run(ctx context.Context) {
	failures := 0
	for {
		wait := s.untilStale()
		if wait <= 0 {
			if _, err := s.fetchShared(ctx, false); err != nil && !errors.Is(err, errThrottled) {
				wait = min(retryMin<<min(failures, 10), retryMax)
				failures++
			} else {
				failures = 0
				wait = s.untilStale()
			}
		}
		if wait <= 0 {
			wait = retryMin
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// untilStale returns how long the keys of the last successful fetch stay
// fresh; 0 or less when a background refresh is due.
func (s *remoteSource) untilStale() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastOK.IsZero() {
		return 0
	}
	return s.lastOK.Add(s.interval).Sub(s.m.now())
}

// freshlyLoaded reports whether the last fetch succeeded less than
// UnknownKidInterval ago.
func (s *remoteSource) freshlyLoaded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr == nil && !s.lastFetched.IsZero() && s.m.now().Sub(s.lastFetched) < UnknownKidInterval
}

func (s *remoteSource) refreshInterval() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.interval
}

// keys returns the current key set. Before the first successful fetch it
// joins an in-flight fetch or starts a rate-limited one, so a JWKS that was
// unreachable at start is picked up as soon as it answers.
func (s *remoteSource) keys(ctx context.Context) (*keySet, error) {
	if set := s.set.Load(); set != nil {
		return set, nil
	}
	set, err := s.refreshUnknown(ctx)
	if set == nil {
		return nil, err
	}
	return set, nil
}

// refreshUnknown is called when a token names a kid the set lacks. It
// refreshes at most once per UnknownKidInterval; concurrent callers share
// one fetch. It returns the key set to use (possibly unchanged) and, when
// the latest fetch attempt failed, that attempt's error.
func (s *remoteSource) refreshUnknown(ctx context.Context) (*keySet, error) {
	if s.mayRefresh() {
		if _, err := s.fetchShared(ctx, true); err != nil && !errors.Is(err, errThrottled) {
			return s.set.Load(), err
		}
	}
	s.mu.Lock()
	err := s.lastErr
	s.mu.Unlock()
	set := s.set.Load()
	if set == nil && err == nil {
		err = errNotLoaded
	}
	return set, err
}

// mayRefresh reports whether an on-demand fetch may start now (see
// throttled).
func (s *remoteSource) mayRefresh() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.throttled(s.m.now())
}

// throttled reports whether an on-demand fetch at now is one too many.
// Before the first key set, any fetch in the last UnknownKidInterval
// throttles it. Once keys are held, it refreshes for an unknown kid, and
// only the last such refresh throttles it: a background fetch moments ago
// must not keep the first unknown kid from finding the JWKS down (SPEC:
// the JWKS is down and the kid is unknown → 503 keys_unavailable). s.mu
// is held.
func (s *remoteSource) throttled(now time.Time) bool {
	last := s.lastFetched
	if s.set.Load() != nil {
		last = s.lastOnDemand
	}
	return !last.IsZero() && now.Sub(last) < UnknownKidInterval
}

// startOnDemand claims the on-demand fetch of the current interval: ok is
// false when it is throttled, and unknownKid true when it refreshes keys
// already held (lastOnDemand).
func (s *remoteSource) startOnDemand() (ok, unknownKid bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.m.now()
	if s.throttled(now) {
		return false, false
	}
	if s.set.Load() != nil {
		s.lastOnDemand = now
		return true, true
	}
	return true, false
}

// fetchShared runs one fetch shared by every concurrent caller. The fetch
// itself runs under the Manager's context, so one caller giving up does not
// fail the others; ctx only bounds this caller's wait.
func (s *remoteSource) fetchShared(ctx context.Context, onDemand bool) (*keySet, error) {
	ch := s.sf.DoChan("fetch", func() (any, error) {
		unknownKid := false
		if onDemand {
			var ok bool
			if ok, unknownKid = s.startOnDemand(); !ok {
				return nil, errThrottled
			}
		}
		if !onDemand && s.freshlyLoaded() {
			return s.set.Load(), nil
		}
		set, err := s.fetch(s.m.ctx)
		s.mu.Lock()
		s.lastFetched = s.m.now()
		if unknownKid {
			s.lastOnDemand = s.lastFetched
		}
		s.lastErr = err
		if err == nil {
			s.lastOK = s.lastFetched
		}
		s.mu.Unlock()
		return set, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		set, _ := r.Val.(*keySet)
		return set, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for jwks: %w", ctx.Err())
	}
}

// fetch downloads, parses and publishes the key set.
func (s *remoteSource) fetch(ctx context.Context) (*keySet, error) {
	jwksURI := s.uri
	if s.discovery {
		u, err := s.discover(ctx)
		if err != nil {
			s.fetchFailed(s.uri, err)
			return nil, err
		}
		jwksURI = u
	}
	body, hdr, err := s.get(ctx, jwksURI)
	if err == nil {
		var keys []*key
		var skipped []skippedKey
		keys, skipped, err = parseJWKS(body)
		s.m.logSkipped(jwksURI, skipped)
		if err == nil && len(keys) == 0 {
			err = ErrNoKeys
		}
		if err == nil {
			set, revoked := carryOver(s.set.Load(), keys)
			s.set.Store(set)
			if revoked {
				s.m.keysRevoked()
			}
			interval := refreshFromHeaders(hdr)
			s.mu.Lock()
			s.interval = interval
			s.mu.Unlock()
			s.m.obs.JWKSFetch(jwksURI, nil)
			s.m.log.Debug("jwt: jwks fetched", "uri", jwksURI, "keys", len(keys), "refresh", interval)
			return set, nil
		}
	}
	err = fmt.Errorf("jwks %s: %w", jwksURI, err)
	s.fetchFailed(jwksURI, err)
	return nil, err
}

func (s *remoteSource) fetchFailed(uri string, err error) {
	s.m.obs.JWKSFetch(uri, err)
	s.m.log.Warn("jwt: jwks fetch failed; keeping previous keys", "uri", uri, "error", err)
}

// discover reads the issuer's OpenID configuration and returns its jwks_uri.
func (s *remoteSource) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(s.uri, "/") + "/.well-known/openid-configuration"
	body, _, err := s.get(ctx, u)
	if err != nil {
		return "", fmt.Errorf("discovery %s: %w", u, err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("discovery %s: decode: %w", u, err)
	}
	if doc.Issuer != s.uri {
		return "", fmt.Errorf("discovery %s: issuer %q does not match %q", u, doc.Issuer, s.uri)
	}
	if err := token.CheckURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery %s: jwks_uri: %w", u, err)
	}
	return doc.JWKSURI, nil
}

// get performs one bounded GET: 5 s deadline, 200 only, at most
// maxDocumentBytes of body, only to allowed hosts (and, through the
// Manager's client, never to link-local or metadata addresses).
func (s *remoteSource) get(ctx context.Context, url string) ([]byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("build request: %w", err)
	}
	if err := s.m.hosts.allow(req.URL); err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.m.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("get: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, nil, fmt.Errorf("get: unexpected status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read body: %w", err)
	}
	if len(body) > maxDocumentBytes {
		return nil, nil, fmt.Errorf("response larger than %d bytes", maxDocumentBytes)
	}
	return body, resp.Header, nil
}

// refreshFromHeaders derives the background refresh interval from a JWKS
// response's freshness (RFC 9111 §4.2.1): Cache-Control max-age less Age,
// else Expires less Date; no-cache or no-store mean the shortest interval.
// The result is clamped to [minRefresh, maxRefresh]; without freshness
// information it is defaultRefresh. On-demand refreshes for unknown kids
// do not wait for it.
func refreshFromHeaders(h http.Header) time.Duration {
	d, ok := freshness(h)
	if !ok {
		return defaultRefresh
	}
	return min(max(d, minRefresh), maxRefresh)
}

func freshness(h http.Header) (time.Duration, bool) {
	maxAge := int64(-1)
	for _, dir := range strings.Split(h.Get("Cache-Control"), ",") {
		dir = strings.ToLower(strings.TrimSpace(dir))
		switch {
		case dir == "no-cache" || dir == "no-store":
			return 0, true
		case strings.HasPrefix(dir, "max-age="):
			n, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(dir, "max-age="), `"`), 10, 64)
			if err == nil && n >= 0 {
				maxAge = min(n, int64(maxRefresh/time.Second))
			}
		}
	}
	if maxAge >= 0 {
		age, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64)
		if err != nil || age < 0 {
			age = 0
		}
		return time.Duration(max(maxAge-age, 0)) * time.Second, true
	}
	if exp := h.Get("Expires"); exp != "" {
		expires, err := http.ParseTime(exp)
		if err != nil {
			return 0, true // an invalid Expires means already expired
		}
		date, err := http.ParseTime(h.Get("Date"))
		if err != nil {
			return 0, false
		}
		return max(expires.Sub(date), 0), true
	}
	return 0, false
}
