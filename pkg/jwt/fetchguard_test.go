package jwt

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

// fakeDNS answers every A query with a4 and every AAAA query with a6 (when
// set), so that any name resolves where a test wants it.
func fakeDNS(t *testing.T, a4, a6 netip.Addr) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			hdr, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: hdr.ID, Response: true, Authoritative: true})
			_ = b.StartQuestions()
			_ = b.Question(q)
			_ = b.StartAnswers()
			rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
			switch {
			case q.Type == dnsmessage.TypeA && a4.IsValid():
				_ = b.AResource(rh, dnsmessage.AResource{A: a4.As4()})
			case q.Type == dnsmessage.TypeAAAA && a6.IsValid():
				_ = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a6.As16()})
			}
			msg, err := b.Finish()
			if err == nil {
				_, _ = pc.WriteTo(msg, from)
			}
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

// TestKeyFetchesNeverReachMetadata (issue 8 §8): a key URL that is, resolves
// to, redirects to or is discovered at a link-local or cloud-metadata
// address never gets a connection — the dial is refused after resolution,
// before the socket connects — and the error says why, for the policy's
// JWKSUnavailable status.
func TestKeyFetchesNeverReachMetadata(t *testing.T) {
	k := jwttest.NewEd25519(t)
	var hits atomic.Int64
	var redirectTo atomic.Value
	redirectTo.Store("")
	mux := http.NewServeMux()
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, redirectTo.Load().(string), http.StatusFound)
	})
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(`{"issuer":"http://` + r.Host + `","jwks_uri":"http://169.254.169.254/jwks"}`))
	})
	good := httptest.NewServer(mux)
	defer good.Close()

	cases := map[string]struct {
		resolver *net.Resolver
		cfg      Config
		redirect string
		addr     string // the refused address named in the error
	}{
		"the IPv4 metadata address":                    {cfg: Config{JWKSURI: "http://169.254.169.254/latest/meta-data/jwks"}, addr: "169.254.169.254"},
		"another IPv4 link-local address, with a port": {cfg: Config{JWKSURI: "https://169.254.10.1:8443/jwks"}, addr: "169.254.10.1"},
		"an IPv6 link-local address":                   {cfg: Config{JWKSURI: "http://[fe80::1%25lo]:8080/jwks"}, addr: "fe80::1"},
		"an IPv4-mapped metadata address":              {cfg: Config{JWKSURI: "http://[::ffff:169.254.169.254]/jwks"}, addr: "169.254.169.254"},
		"the AWS IPv6 metadata address":                {cfg: Config{JWKSURI: "http://[fd00:ec2::254]/jwks"}, addr: "fd00:ec2::254"},
		"a name resolving to the metadata address": {resolver: fakeDNS(t, netip.MustParseAddr("169.254.169.254"), netip.Addr{}),
			cfg: Config{JWKSURI: "http://metadata.tollgate.test/jwks"}, addr: "169.254.169.254"},
		"a name resolving to an IPv6 link-local address": {resolver: fakeDNS(t, netip.Addr{}, netip.MustParseAddr("fe80::a9fe:a9fe")),
			cfg: Config{JWKSURI: "http://ll6.tollgate.test/jwks"}, addr: "fe80::a9fe:a9fe"},
		"a redirect to the metadata address": {cfg: Config{JWKSURI: good.URL + "/redirect"},
			redirect: "http://169.254.169.254/latest/meta-data/", addr: "169.254.169.254"},
		"a discovered jwks_uri at the metadata address": {cfg: Config{Issuer: good.URL, Discovery: true}, addr: "169.254.169.254"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			redirectTo.Store(c.redirect)
			m, clock, logs := newTestManager(t, Options{Resolver: c.resolver})
			cfg := c.cfg
			if cfg.Issuer == "" {
				cfg.Issuer = testIssuer
			}
			v := mustVerifier(t, m, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := v.WaitKeys(ctx)
			if !errors.Is(err, ErrForbiddenAddress) {
				t.Fatalf("WaitKeys = %v, want ErrForbiddenAddress", err)
			}
			if !strings.Contains(err.Error(), c.addr) || !strings.Contains(err.Error(), "link-local or cloud metadata") {
				t.Fatalf("error %q does not say which address and why", err)
			}
			if _, err := v.Verify(ctx, k.Mint(t, claims(clock.Now()))); ReasonOf(err) != ReasonKeysUnavailable {
				t.Fatalf("Verify = %v, want keys_unavailable", err)
			}
			if !strings.Contains(logs.String(), "link-local or cloud metadata") {
				t.Error("the refusal is not logged")
			}
		})
	}
	if hits.Load() == 0 {
		t.Fatal("the redirect and discovery cases never reached the allowed server")
	}
}

func TestForbiddenAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"169.254.169.254": true, "169.254.0.1": true, "fe80::1": true, "fe80::1%eth0": true, "::ffff:169.254.169.254": true,
		"fd00:ec2::254": true, "100.100.100.200": true, "192.0.0.192": true, "64:ff9b::169.254.169.254": true, "ff02::1": true,
		"224.0.0.1": true, "127.0.0.1": false, "::1": false, "10.0.0.1": false, "192.168.1.1": false, "8.8.8.8": false,
		"2001:db8::1": false, "fd00:ec2::253": false, "100.100.100.201": false,
	} {
		if got := forbiddenAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("forbiddenAddr(%s) = %t, want %t", addr, got, want)
		}
	}
}

// TestAllowedHosts: with --jwks-allowed-hosts, key URLs, discovered
// jwks_uris and redirects outside the globs are refused before any request,
// with an error naming the host.
func TestAllowedHosts(t *testing.T) {
	k := jwttest.NewEd25519(t)
	var hits atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(k.JWKS()))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	port := srv.URL[strings.LastIndexByte(srv.URL, ':'):]
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://localhost"+port+"/jwks", http.StatusFound)
	})
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"issuer":"http://` + r.Host + `","jwks_uri":"http://localhost` + port + `/jwks"}`))
	})
	cases := map[string]struct {
		globs   []string
		cfg     Config
		allowed bool
	}{
		"any host by default":                    {cfg: Config{JWKSURI: srv.URL + "/jwks"}, allowed: true},
		"a listed address":                       {globs: []string{"auth.example.com", "127.0.0.1"}, cfg: Config{JWKSURI: srv.URL + "/jwks"}, allowed: true},
		"a glob":                                 {globs: []string{"127.0.0.*"}, cfg: Config{JWKSURI: srv.URL + "/jwks"}, allowed: true},
		"a host outside the list":                {globs: []string{"*.example.com"}, cfg: Config{JWKSURI: srv.URL + "/jwks"}},
		"a redirect outside the list":            {globs: []string{"127.0.0.1"}, cfg: Config{JWKSURI: srv.URL + "/redirect"}},
		"a discovered jwks_uri outside the list": {globs: []string{"127.0.0.1"}, cfg: Config{Issuer: srv.URL, Discovery: true}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			before := hits.Load()
			m, _, _ := newTestManager(t, Options{AllowedHosts: c.globs})
			cfg := c.cfg
			if cfg.Issuer == "" {
				cfg.Issuer = testIssuer
			}
			err := mustVerifier(t, m, cfg).WaitKeys(context.Background())
			if c.allowed {
				if err != nil {
					t.Fatalf("WaitKeys: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrHostNotAllowed) || !strings.Contains(err.Error(), "--jwks-allowed-hosts") {
				t.Fatalf("WaitKeys = %v, want ErrHostNotAllowed", err)
			}
			if hits.Load() != before {
				t.Fatal("the JWKS was fetched from a host outside the list")
			}
		})
	}
	for _, bad := range []string{"", "Auth.example.com", "a/b", "host:443", "[::1]", "a[b"} {
		if CheckHostGlob(bad) == nil {
			t.Errorf("CheckHostGlob(%q) accepted", bad)
		}
	}
	for _, good := range []string{"*.example.com", "auth.example.com", "10.0.0.7", "*"} {
		if err := CheckHostGlob(good); err != nil {
			t.Errorf("CheckHostGlob(%q): %v", good, err)
		}
	}
}
