// Package exepages gives back the pages of the running executable that
// start-up touched and serving no longer needs.
//
// Go runs the init function of every linked package at start, whether or
// not the process uses the package: tollgate serve without --kubernetes
// still registers every Kubernetes API type (client-go's scheme, pulled
// in by controller-runtime) and every protobuf file it links. Each touch
// maps the file pages around it (the kernel's fault-around and large
// folios), so start-up leaves some 40 MB of the ~58 MB executable mapped,
// and in the process's RSS, though serving runs a fraction of that code.
// The pages are clean copies of the file: unmapping them loses nothing,
// and what serving does touch comes back from the page cache on first use.
package exepages

// Released reports what Release did: the bytes of the executable's
// read-only mappings it unmapped.
type Released struct {
	Bytes int64
	// Skipped says why nothing was released, if so: a tracer (a debugger)
	// is attached, the executable is position-independent or dynamically
	// linked (its read-only data was relocated at load), or the platform
	// has no such mappings to release.
	Skipped string
}
