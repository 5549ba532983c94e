# syntax=docker/dockerfile:1
# tollgate's container image: `make docker-build` (IMG=... to name it).
#
# The build stage runs hack/build.sh, the script `make build` and
# test/packaging (TestBinaryIsStatic) use, so the image's binary is built
# with the flags the tests check: CGO_ENABLED=0, a static binary with no
# ELF interpreter and no shared libraries. The final stage is distroless
# static (no shell, no libc, CA certificates for JWKS over HTTPS) and runs
# as the non-root user 65532.
ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	GOOS=$TARGETOS GOARCH=$TARGETARCH VERSION=$VERSION COMMIT=$COMMIT hack/build.sh /out/tollgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tollgate /tollgate
USER 65532:65532
# gRPC ext_authz, HTTP forward-auth, metrics, health (tollgate serve defaults).
EXPOSE 50051 5001 8080 8081
ENTRYPOINT ["/tollgate"]
CMD ["serve"]
