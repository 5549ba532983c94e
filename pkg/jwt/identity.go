package jwt

import "github.com/tollgate-dev/tollgate/pkg/token"

// Identity is a verified token (token.Identity, shared with the decision
// core): what decisions read of it and nothing more.
type Identity = token.Identity
