package policyfile

// A Problem is one error found while loading policy files.
type Problem struct {
	File string
	// Object is "namespace/name", "document N", or empty for a file-level
	// problem.
	Object string
	// Field is the field path (spec.rules[0].owner.path), when known.
	Field   string
	Message string
	// Warning marks a problem that loses nothing, such as a skipped
	// document that is not an AuthPolicy.
	Warning bool
}

func (p Problem) String() string {
	s := p.File
	if p.Object != "" {
		s += ": " + p.Object
	}
	if p.Field != "" {
		s += ": " + p.Field
	}
	if p.Warning {
		s += ": warning"
	}
	return s + ": " + p.Message
}
