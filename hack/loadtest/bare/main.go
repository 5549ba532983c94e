// Command bare is the load test's baseline: a grpc-go Envoy ext_authz
// server with grpc-go's default settings that answers every Check with a
// constant OK, without looking at the request. tollgate's cost per Check
// is reported as a ratio against it.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof" // -pprof-addr: the load test's -cpuprofile

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

type okServer struct {
	authv3.UnimplementedAuthorizationServer
}

var ok = &authv3.CheckResponse{
	Status:       &rpcstatus.Status{},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

func (okServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return ok, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "listen address")
	pprofAddr := flag.String("pprof-addr", "", "serve /debug/pprof/ on this address; empty: off")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { log.Fatal(http.ListenAndServe(*pprofAddr, nil)) }()
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, okServer{})
	log.Fatal(srv.Serve(lis))
}
