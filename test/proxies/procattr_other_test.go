//go:build !linux

package proxies_test

import "os/exec"

// dieWithParent does nothing where the kernel cannot tie a child's life to
// its parent's; t.Cleanup still stops every child of a test that ends.
func dieWithParent(*exec.Cmd) {}
