package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate-dev/tollgate/pkg/devkey"
)

const (
	issuer = "https://auth.abuse.example"
	host   = "api.abuse.example"
	// reloadHost is served by the policy the idle scenario adds while the
	// connections are held, to see whether a reload still works.
	reloadHost = "reload.abuse.example"
)

// policyTemplate: JWT with an inline JWKS (%s), ownership on the path and a
// per-user limit that the run never exhausts, so that every normal check is
// a full allow.
const policyTemplate = `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: tasks-api
  namespace: abuse
spec:
  hosts: [%q]
  jwt:
    issuer: %q
    jwks: '%s'
    algorithms: [ES256]
    forwardClaims:
      x-user-id: sub
  rules:
    - name: own-tasks
      path: /api/users/{userId}/tasks/**
      owner:
        path: userId
      limits:
        - name: per-user
          requests: 1000000000
          period: 1h
          by: user
`

const reloadPolicy = `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: reloaded
  namespace: abuse
spec:
  hosts: [%q]
  rules:
    - name: everything
      anonymous: true
`

// fixture is what generate writes and builds.
type fixture struct {
	policyDir string
	token     string
	// request is the well-behaved client's CheckRequest; normal is it
	// encoded.
	request     *authv3.CheckRequest
	normal      []byte
	normalSize  int
	requestFile string // normal, for the probe process
}

func generate(dir string) (*fixture, error) {
	key, err := devkey.Generate("ES256")
	if err != nil {
		return nil, err
	}
	jwks, err := key.PublicJWKS()
	if err != nil {
		return nil, err
	}
	fx := &fixture{policyDir: filepath.Join(dir, "policies")}
	if err := os.MkdirAll(fx.policyDir, 0o755); err != nil {
		return nil, err
	}
	policy := fmt.Sprintf(policyTemplate, host, issuer, bytes.TrimSpace(jwks))
	if err := os.WriteFile(filepath.Join(fx.policyDir, "tasks-api.yaml"), []byte(policy), 0o644); err != nil {
		return nil, err
	}
	if fx.token, err = key.Mint(map[string]any{"iss": issuer, "sub": "alice"}, 24*time.Hour); err != nil {
		return nil, err
	}
	fx.request = checkRequest(fx.token, 0)
	if fx.normal, err = proto.Marshal(fx.request); err != nil {
		return nil, err
	}
	fx.normalSize = len(fx.normal)
	fx.requestFile = filepath.Join(dir, "normal.bin")
	return fx, os.WriteFile(fx.requestFile, fx.normal, 0o644)
}

// sized returns the normal CheckRequest grown to size bytes with a request
// body, which tollgate never reads (Envoy sends one only when told
// with_request_body).
func (fx *fixture) sized(size int) ([]byte, error) {
	pad := max(size-fx.normalSize-8, 0)
	b, err := proto.Marshal(checkRequest(fx.token, pad))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// addReloadPolicy writes a second policy, as an operator's change would.
func (fx *fixture) addReloadPolicy() error {
	tmp := filepath.Join(fx.policyDir, ".reloaded.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf(reloadPolicy, reloadHost)), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(fx.policyDir, "reloaded.yaml"))
}

// checkRequest is what Envoy sends for a browser's API call, with a body
// of bodySize bytes.
func checkRequest(token string, bodySize int) *authv3.CheckRequest {
	const path = "/api/users/alice/tasks/42?include=comments&limit=20"
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socketAddress("203.0.113.7", 51234)},
		Destination: &authv3.AttributeContext_Peer{Address: socketAddress("10.0.12.34", 8443)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "8f5c1e0e-2f0b-4b7e-9a51-6d1c2f3a4b5c", Method: "GET", Path: path, Host: host, Scheme: "https", Protocol: "HTTP/2",
			Headers: map[string]string{
				":authority": host, ":method": "GET", ":path": path, ":scheme": "https",
				"accept":          "application/json",
				"authorization":   "Bearer " + token,
				"user-agent":      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
				"x-forwarded-for": "203.0.113.7", "x-request-id": "8f5c1e0e-2f0b-4b7e-9a51-6d1c2f3a4b5c",
			},
			Body: strings.Repeat("x", bodySize),
		}},
	}}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
