package policyfile

import (
	"fmt"

	"github.com/tollgate-dev/tollgate/pkg/policy"
)

// A Problem is one error found while loading policy files.
type Problem struct {
	File string
	// Object is "namespace/name", "document N", or empty for a file-level
	// problem.
	Object string
	// Field is the field path (spec.rules[0].owner.path), when known.
	Field   string
	Message string
}

func (p Problem) String() string {
	s := p.File
	if p.Object != "" {
		s += ": " + p.Object
	}
	if p.Field != "" {
		s += ": " + p.Field
	}
	return s + ": " + p.Message
}

// Load reads and compiles every policy under paths. It returns the compiled
// policies in file order (the order that decides which of two conflicting
// policies is newer) and every problem found. Policies with problems are
// left out; callers serving traffic should treat any problem as a reason to
// keep their last good set.
func Load(paths ...string) ([]*policy.Policy, []Problem) {
	files, err := Files(paths...)
	if err != nil {
		return nil, []Problem{{Message: err.Error()}}
	}
	var (
		policies []*policy.Policy
		problems []Problem
		origin   = map[*policy.Policy]string{}
		seen     = map[string]string{}
	)
	for _, f := range files {
		docs, err := ReadFile(f)
		if err != nil {
			problems = append(problems, Problem{File: f, Message: err.Error()})
		}
		for i := range docs {
			d := &docs[i]
			if d.Err != nil {
				problems = append(problems, Problem{File: f, Object: d.Object(), Message: d.Err.Error()})
				continue
			}
			p, err := policy.Compile(d.Policy)
			if err != nil {
				fes := policy.FieldErrors(err)
				if fes == nil {
					problems = append(problems, Problem{File: f, Object: d.Object(), Message: err.Error()})
				}
				for _, fe := range fes {
					problems = append(problems, Problem{File: f, Object: d.Object(), Field: fe.Field, Message: fe.ErrorBody()})
				}
				continue
			}
			if prev, dup := seen[p.Key()]; dup {
				problems = append(problems, Problem{File: f, Object: d.Object(), Field: "metadata.name", Message: fmt.Sprintf("policy %s is also defined in %s", p.Key(), prev)})
				continue
			}
			seen[p.Key()] = f
			origin[p] = f
			policies = append(policies, p)
		}
	}
	for _, c := range policy.FindConflicts(policies) {
		problems = append(problems, Problem{
			File: origin[c.Newer], Object: c.Newer.Key(), Field: "spec",
			Message: fmt.Sprintf("Conflict: policy %s already governs host %s with pathPrefix %q", c.Older.Key(), c.Host, c.Older.PathPrefix),
		})
	}
	return policies, problems
}
