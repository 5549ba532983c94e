//go:build !linux

package exepages

// Release does nothing outside Linux.
func Release() (Released, error) {
	return Released{Skipped: "not supported on this platform"}, nil
}
