// Package version reports the build's version, commit and Go version.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version and Commit are set at link time with -ldflags -X.
var (
	Version = "dev"
	Commit  = ""
)

// A Build describes the running binary.
type Build struct {
	Version string
	// Commit is the link-time Commit, else the first 12 digits of the VCS
	// revision the Go toolchain recorded, else "unknown".
	Commit    string
	GoVersion string
}

// Get returns the running binary's Build.
func Get() Build {
	commit := Commit
	if commit == "" {
		commit = "unknown"
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 12 {
					commit = s.Value[:12]
				}
			}
		}
	}
	return Build{Version: Version, Commit: commit, GoVersion: runtime.Version()}
}

// String returns a one-line description of the build.
func String() string {
	b := Get()
	return fmt.Sprintf("tollgate %s (commit %s, %s, %s/%s)", b.Version, b.Commit, b.GoVersion, runtime.GOOS, runtime.GOARCH)
}
