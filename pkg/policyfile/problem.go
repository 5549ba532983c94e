package policyfile

import (
	"errors"
	"strconv"

	"github.com/tollgate-dev/tollgate/pkg/policy/compiler"
	"github.com/tollgate-dev/tollgate/pkg/policyset"
)

// A Problem is one error found while loading policy files.
type Problem struct {
	File string
	// Line is the line of File the problem is on, from 1; 0 when unknown.
	Line int
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

// String returns the problem on one line, starting with the file:
// "file:line: object: field: message".
func (p Problem) String() string {
	s := p.File
	if p.Line > 0 {
		s += ":" + strconv.Itoa(p.Line)
	}
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

// problemsOf returns the problems that err, about object of file, holds:
// one per mistake of a DecodeError or of the compiler, else one (with
// its field for a policyset.KeyError).
func problemsOf(file, object string, err error) []Problem {
	var de *DecodeError
	if errors.As(err, &de) {
		out := make([]Problem, len(de.Errs))
		for i, fe := range de.Errs {
			out[i] = Problem{File: file, Line: fe.Line, Object: object, Field: fe.Field, Message: fe.Message}
		}
		return out
	}
	if fes := compiler.FieldErrors(err); len(fes) > 0 {
		out := make([]Problem, len(fes))
		for i, fe := range fes {
			out[i] = Problem{File: file, Object: object, Field: fe.Field, Message: fe.ErrorBody()}
		}
		return out
	}
	var ke *policyset.KeyError
	if errors.As(err, &ke) {
		return []Problem{{File: file, Object: object, Field: ke.Field, Message: ke.Err.Error()}}
	}
	return []Problem{{File: file, Object: object, Message: err.Error()}}
}
