// Package packaging holds the tests of what users install: the container
// image's build (Dockerfile, hack/build.sh), the Helm chart
// (charts/tollgate) and the kustomize bases (config/default), run with the
// real helm and kubectl that hack/envtest-tools.sh builds, and installed
// into a real kube-apiserver (envtest). It has no code of its own.
package packaging
