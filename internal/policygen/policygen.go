// Package policygen generates AuthPolicies at scale for benchmarks: policy
// i is team-(i/100)/api-i on host svc-i.example.test with five rules, a
// policy limit and a rule limit, verified with an inline JWKS.
package policygen

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Issuer is the issuer of every generated policy.
const Issuer = "https://auth.example.test"

// Host returns the host of policy i.
func Host(i int) string { return fmt.Sprintf("svc-%d.example.test", i) }

// Key returns "namespace/name" of policy i.
func Key(i int) string { return fmt.Sprintf("team-%03d/api-%05d", i/100, i) }

// File returns the file name of policy i.
func File(i int) string { return fmt.Sprintf("api-%05d.yaml", i) }

// Policy returns policy i as YAML, verified with jwks. With private, its
// /api/public/** rule needs a token too (the change a benchmark applies).
func Policy(i int, jwks string, private bool) string {
	ns, name, _ := strings.Cut(Key(i), "/")
	anonymous := "true"
	if private {
		anonymous = "false"
	}
	return fmt.Sprintf(`apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: %s
  namespace: %s
spec:
  hosts: [%q]
  pathPrefix: /api
  jwt:
    issuer: %s
    jwks: '%s'
    forwardClaims:
      x-user-id: sub
  limits:
    - name: per-ip
      requests: 1000000000
      period: 1h
      by: ip
  rules:
    - name: health
      methods: [GET, HEAD]
      path: /api/health
      anonymous: true
    - name: public
      path: /api/public/**
      anonymous: %s
    - name: own-tasks
      methods: [GET, PUT, PATCH, DELETE]
      path: /api/users/{userId}/tasks/**
      owner:
        path: userId
        allowIf: {claim: role, values: [admin]}
      limits:
        - name: per-user
          requests: 1000000000
          period: 1h
          by: user
    - name: profile
      methods: [GET]
      path: /api/me
    - name: reports
      methods: [GET]
      path: /api/reports/*
`, name, ns, Host(i), Issuer, jwks, anonymous)
}

// WriteDir writes policies 0..n-1, one file each, into dir.
func WriteDir(dir string, n int, jwks string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("policygen: %w", err)
	}
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, File(i)), []byte(Policy(i, jwks, false)), 0o644); err != nil {
			return fmt.Errorf("policygen: %w", err)
		}
	}
	return nil
}
