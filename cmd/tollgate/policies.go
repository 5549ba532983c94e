package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/policyfile"
	"github.com/tollgate-dev/tollgate/pkg/policyset"
)

// loadOptions says how check and validate load policy files.
type loadOptions struct {
	paths               []string
	keys                policyset.Keys
	publish             func(snap *decision.Snapshot, changed []string)
	crossNamespaceHosts bool
}

// loadPolicyFiles reads the policy files under paths into a new policy set
// and publishes it, the way serve does at start: every check serve makes
// (compiling, key configuration, conflicts, host ownership) is made. It
// returns the set (to Close), the problems found and the number of
// policies read.
func loadPolicyFiles(ctx context.Context, o loadOptions) (*policyset.Set, []policyfile.Problem, int, error) {
	set := policyset.New(policyset.Options{Keys: o.keys, Publish: o.publish, CrossNamespaceHosts: o.crossNamespaceHosts})
	src := policyfile.NewSource(policyfile.SourceOptions{Set: set, Paths: o.paths})
	problems := src.Sync()
	if err := set.Flush(ctx); err != nil {
		set.Close()
		return nil, nil, 0, fmt.Errorf("load policies: %w", err)
	}
	return set, sortProblems(policyfile.AddLines(problems)), len(src.Keys()), nil
}

// sortProblems orders problems by file, in the order the files were read,
// then by line (problems of the whole file first).
func sortProblems(problems []policyfile.Problem) []policyfile.Problem {
	order := map[string]int{}
	for _, p := range problems {
		if _, ok := order[p.File]; !ok {
			order[p.File] = len(order)
		}
	}
	slices.SortStableFunc(problems, func(a, b policyfile.Problem) int {
		return cmp.Or(cmp.Compare(order[a.File], order[b.File]), cmp.Compare(a.Line, b.Line))
	})
	return problems
}

// printProblems writes every problem to w and returns the number of
// errors (warnings excluded).
func printProblems(w io.Writer, problems []policyfile.Problem) int {
	for _, p := range problems {
		fmt.Fprintln(w, p.String())
	}
	return countErrors(problems)
}

// countErrors returns the number of problems that are errors.
func countErrors(problems []policyfile.Problem) int {
	errs := 0
	for _, p := range problems {
		if !p.Warning {
			errs++
		}
	}
	return errs
}

// problemLines returns the problems, one a line.
func problemLines(problems []policyfile.Problem) string {
	lines := make([]string, len(problems))
	for i, p := range problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// offlineKeys returns a key manager that checks key settings as serve does
// (an inline JWKS is parsed) but never fetches a key set or reads a
// Secret: validate works offline.
func offlineKeys() *jwt.Manager {
	return jwt.NewManager(jwt.Options{
		CacheSize:  -1,
		HTTPClient: &http.Client{Transport: offlineTransport{}},
		Secrets:    offlineSecrets{},
	})
}

var errOffline = errors.New("not looked up by validate")

type offlineTransport struct{}

func (offlineTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, errOffline }

type offlineSecrets struct{}

func (offlineSecrets) Secret(context.Context, jwt.SecretRef) ([]byte, error) { return nil, errOffline }
