package pathnorm_test

import (
	"errors"
	"fmt"

	"github.com/tollgate-dev/tollgate/pkg/pathnorm"
)

func ExampleStrict() {
	for _, raw := range []string{
		"/api/v1/users/alice/?page=2",
		"/api/v1/users/caf%c3%a9",
		"/api//v1/./users/%61lice/",
		"/public/%2e%2e/admin",
		"/files#?owner=alice",
	} {
		p, err := pathnorm.Strict(raw)
		if err != nil {
			fmt.Printf("%s: 400 (%v)\n", raw, err)
			continue
		}
		fmt.Printf("%s: %s\n", raw, p)
	}
	// Output:
	// /api/v1/users/alice/?page=2: /api/v1/users/alice/
	// /api/v1/users/caf%c3%a9: /api/v1/users/caf%C3%A9
	// /api//v1/./users/%61lice/: 400 (pathnorm: empty segment)
	// /public/%2e%2e/admin: 400 (pathnorm: dot segment)
	// /files#?owner=alice: /files
}

func ExampleNormalize() {
	for _, raw := range []string{
		"/api//v1/./users/%61lice/?page=2",
		"/public/%2e%2e/admin",
		"/users/bob/tasks///../../alice/tasks",
		"/public/..;/admin",
		"/files/a%2Fb",
	} {
		p, err := pathnorm.Normalize(raw)
		switch {
		case errors.Is(err, pathnorm.ErrDotSegmentParam):
			fmt.Printf("%s: 400 (dot segment with parameter)\n", raw)
		case err != nil:
			fmt.Printf("%s: 400 (%v)\n", raw, err)
		default:
			fmt.Printf("%s: %s\n", raw, p)
		}
	}
	// Output:
	// /api//v1/./users/%61lice/?page=2: /api/v1/users/alice/
	// /public/%2e%2e/admin: /admin
	// /users/bob/tasks///../../alice/tasks: 400 (pathnorm: dot-dot segment after an empty segment)
	// /public/..;/admin: 400 (dot segment with parameter)
	// /files/a%2Fb: 400 (pathnorm: encoded slash)
}
