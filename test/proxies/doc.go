// Package proxies holds the tests of the proxy examples under config/:
// Envoy bootstraps and Istio resources parsed strictly into the proxies'
// own API types, and nginx and Caddy run for real in front of a real
// `tollgate serve` and a recording upstream. It has no code of its own.
package proxies
