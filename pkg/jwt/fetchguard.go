package jwt

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"syscall"
	"time"
)

// Key fetches (jwksURI, discovery and the jwks_uri it names, betterAuth's
// baseURL, and every redirect) make tollgate connect to a URL a policy's
// author chose. They never reach the addresses below, checked on the
// resolved address at dial time so that no DNS answer can route around
// the check, and, when Options.AllowedHosts is set, only hosts it allows.
var (
	// ErrForbiddenAddress: a key fetch would connect to a link-local or
	// cloud-metadata address.
	ErrForbiddenAddress = errors.New("key fetches never connect to link-local or cloud metadata addresses")
	// ErrHostNotAllowed: a key URL's host is outside Options.AllowedHosts
	// (serve's --jwks-allowed-hosts).
	ErrHostNotAllowed = errors.New("host not allowed by --jwks-allowed-hosts")
)

// forbiddenPrefixes are link-local ranges and the cloud metadata addresses
// outside them.
var forbiddenPrefixes = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),      // IPv4 link-local: AWS, GCP, Azure, OpenStack, DigitalOcean metadata at 169.254.169.254
	netip.MustParsePrefix("fe80::/10"),           // IPv6 link-local
	netip.MustParsePrefix("fd00:ec2::254/128"),   // AWS instance metadata over IPv6
	netip.MustParsePrefix("100.100.100.200/32"),  // Alibaba Cloud metadata
	netip.MustParsePrefix("192.0.0.192/32"),      // Oracle Cloud legacy metadata
	netip.MustParsePrefix("64:ff9b::a9fe:0/112"), // NAT64 spelling of 169.254.0.0/16
}

// forbiddenAddr reports whether a key fetch must not connect to a.
func forbiddenAddr(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		return true
	}
	for _, p := range forbiddenPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// dialControl runs after the address is resolved and before the socket
// connects: the one place every key fetch's connection passes.
func dialControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot check %q", ErrForbiddenAddress, address)
	}
	if forbiddenAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
	}
	return nil
}

// newFetchClient returns the HTTP client of key fetches: a 5 s budget, no
// proxy (a proxy would connect on our behalf, past the address check), and
// dialControl on every connection.
func newFetchClient(resolver *net.Resolver) *http.Client {
	d := &net.Dialer{Timeout: fetchTimeout, KeepAlive: 30 * time.Second, Resolver: resolver, Control: dialControl}
	return &http.Client{
		Timeout: fetchTimeout,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           d.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          16,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   fetchTimeout,
			ResponseHeaderTimeout: fetchTimeout,
		},
	}
}

// maxRedirects bounds the redirects of one key fetch.
const maxRedirects = 5

// hostGuard holds Options.AllowedHosts.
type hostGuard struct{ globs []string }

// CheckHostGlob reports whether glob is a valid --jwks-allowed-hosts entry:
// a host name or address in lower case where * matches any run of
// characters ("*.example.com", "auth.example.com", "10.0.0.7").
func CheckHostGlob(glob string) error {
	if glob == "" || strings.ContainsAny(glob, "/:[]\\") || glob != strings.ToLower(glob) {
		return fmt.Errorf("host glob %q: want a lower-case host name or address, * for any run of characters", glob)
	}
	if _, err := path.Match(glob, ""); err != nil {
		return fmt.Errorf("host glob %q: %w", glob, err)
	}
	return nil
}

// allow checks the host of u against the allow-list; an empty list allows
// every host.
func (g hostGuard) allow(u *url.URL) error {
	if len(g.globs) == 0 {
		return nil
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	for _, glob := range g.globs {
		if ok, _ := path.Match(glob, host); ok {
			return nil
		}
	}
	return fmt.Errorf("%w: %q", ErrHostNotAllowed, host)
}

// checkRedirect applies the allow-list and a redirect bound to every hop;
// the address check applies to their connections at dial time.
func (g hostGuard) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	return g.allow(req.URL)
}
