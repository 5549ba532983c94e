package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tollgate-dev/tollgate/pkg/devkey"
)

// Identity of the generated tokens and policy.
const (
	issuer   = "https://auth.loadtest.example"
	audience = "https://api.loadtest.example"
	host     = "api.loadtest.example"
)

// policyTemplate is the measured policy: JWT with an inline JWKS, ownership
// on the path and one per-user limit that the test never exhausts (so every
// Check is a full allow: verify, owner, charge). %s is the JWKS.
const policyTemplate = `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: tasks-api
  namespace: loadtest
spec:
  hosts: [%q]
  pathPrefix: /api
  jwt:
    issuer: %q
    audiences: [%q]
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
          requests: 1000000
          period: 1h
          by: user
`

// fixture is what gen writes into the work directory.
type fixture struct {
	policyDir string
	protoset  string
	data      string // count-delimited binary CheckRequests for ghz
	requests  []*authv3.CheckRequest
	avgSize   int
}

// generate writes an ES256 key's policy, users tokens, one CheckRequest per
// user and the protoset into dir.
func generate(dir string, users int) (*fixture, error) {
	key, err := devkey.Generate("ES256")
	if err != nil {
		return nil, err
	}
	jwks, err := key.PublicJWKS()
	if err != nil {
		return nil, err
	}
	f := &fixture{
		policyDir: filepath.Join(dir, "policies"),
		protoset:  filepath.Join(dir, "auth.protoset"),
		data:      filepath.Join(dir, "requests.bin"),
	}
	if err := os.MkdirAll(f.policyDir, 0o755); err != nil {
		return nil, err
	}
	policy := fmt.Sprintf(policyTemplate, host, issuer, audience, bytes.TrimSpace(jwks))
	if err := os.WriteFile(filepath.Join(f.policyDir, "tasks-api.yaml"), []byte(policy), 0o644); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var data bytes.Buffer
	for i := range users {
		sub := fmt.Sprintf("user-%05d", i)
		token, err := key.Mint(map[string]any{
			"iss": issuer, "aud": audience, "sub": sub,
			"email": sub + "@loadtest.example", "plan": "free",
		}, 24*time.Hour)
		if err != nil {
			return nil, err
		}
		req := checkRequest(rng, sub, token)
		f.requests = append(f.requests, req)
		if _, err := protodelim.MarshalTo(&data, req); err != nil {
			return nil, err
		}
		f.avgSize += proto.Size(req)
	}
	f.avgSize /= max(users, 1)
	if err := os.WriteFile(f.data, data.Bytes(), 0o644); err != nil {
		return nil, err
	}
	return f, writeProtoset(f.protoset, authv3.File_envoy_service_auth_v3_external_auth_proto)
}

// checkRequest is what Envoy sends for a browser's API call: the usual
// request headers, source and destination addresses, time and request id.
func checkRequest(rng *rand.Rand, sub, token string) *authv3.CheckRequest {
	path := fmt.Sprintf("/api/users/%s/tasks/%d?include=comments&limit=20", sub, rng.IntN(10000))
	client := fmt.Sprintf("203.0.113.%d", 1+rng.IntN(254))
	id := fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<12), rng.Uint64()&(1<<48-1))
	headers := map[string]string{
		":authority":                     host,
		":method":                        "GET",
		":path":                          path,
		":scheme":                        "https",
		"accept":                         "application/json, text/plain, */*",
		"accept-encoding":                "gzip, deflate, br, zstd",
		"accept-language":                "en-US,en;q=0.9,de;q=0.8",
		"authorization":                  "Bearer " + token,
		"origin":                         "https://app.loadtest.example",
		"referer":                        "https://app.loadtest.example/tasks",
		"sec-fetch-mode":                 "cors",
		"user-agent":                     "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
		"x-forwarded-for":                client,
		"x-forwarded-proto":              "https",
		"x-request-id":                   id,
		"x-envoy-expected-rq-timeout-ms": "15000",
		"traceparent":                    fmt.Sprintf("00-%016x%016x-%016x-01", rng.Uint64(), rng.Uint64(), rng.Uint64()),
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: socketAddress(client, uint32(1024+rng.IntN(60000)))},
		Destination: &authv3.AttributeContext_Peer{
			Address:   socketAddress("10.0.12.34", 8443),
			Principal: "spiffe://cluster.local/ns/loadtest/sa/tasks-api",
		},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(time.Date(2026, 5, 1, 12, 0, 0, rng.IntN(1e9), time.UTC)),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       fmt.Sprint(rng.Uint64()),
				Method:   "GET",
				Headers:  headers,
				Path:     path,
				Host:     host,
				Scheme:   "https",
				Protocol: "HTTP/2",
			},
		},
	}}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// writeProtoset writes the file descriptor set of fd and everything it
// imports, dependencies first, as ghz's --protoset: built from the
// descriptors go-control-plane registers, so no .proto files are needed.
func writeProtoset(path string, fd protoreflect.FileDescriptor) error {
	var set descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	var add func(protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(fd)
	b, err := proto.Marshal(&set)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
