package policyfile

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"time"
)

// Fingerprint summarizes the policy files under paths: their names and
// contents. Any change to what Load would read changes it. Unreadable files
// count by name only, so that their reappearance is a change too.
func Fingerprint(paths ...string) [32]byte {
	h := sha256.New()
	files, err := Files(paths...)
	if err != nil {
		io.WriteString(h, "error:"+err.Error())
	}
	for _, f := range files {
		io.WriteString(h, f)
		h.Write([]byte{0})
		if file, err := os.Open(f); err == nil {
			io.Copy(h, io.LimitReader(file, MaxFileSize+1))
			file.Close()
		}
		h.Write([]byte{0})
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// Watch calls changed once at the start and then whenever the policy files
// under paths change, polling every interval until ctx is done. The
// fingerprint is taken before each call, so no change is missed. Polling, rather than inotify, also sees
// the atomic symlink swap with which Kubernetes updates a mounted ConfigMap,
// and edits on file systems without change events.
func Watch(ctx context.Context, interval time.Duration, changed func(), paths ...string) {
	last := Fingerprint(paths...)
	changed()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if now := Fingerprint(paths...); now != last {
				last = now
				changed()
			}
		}
	}
}
