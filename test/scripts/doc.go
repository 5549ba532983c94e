// Package scripts holds the tests of the developer scripts behind the
// Makefile (hack/run.sh, hack/test.sh), run for real: `make run` with a
// freshly built tollgate, `hack/test.sh` with stand-ins for the programs it
// calls. It has no code of its own.
package scripts
