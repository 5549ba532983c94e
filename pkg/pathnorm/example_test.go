package pathnorm_test

import (
	"errors"
	"fmt"

	"github.com/tollgate-dev/tollgate/pkg/pathnorm"
)

func ExampleNormalize() {
	for _, raw := range []string{
		"/api//v1/./users/%61lice/?page=2",
		"/public/%2e%2e/admin",
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
	// /public/..;/admin: 400 (dot segment with parameter)
	// /files/a%2Fb: 400 (pathnorm: encoded slash)
}
