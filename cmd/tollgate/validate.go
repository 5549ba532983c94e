package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/pkg/policyfile"
)

func newValidateCommand() *cobra.Command {
	var (
		crossNamespaceHosts bool
		output              string
	)
	cmd := &cobra.Command{
		Use:   "validate FILE_OR_DIR...",
		Short: "Validate AuthPolicy files; exit 0 when all are valid, 1 on any error, 2 on a usage error",
		Long: `Validate AuthPolicy files with every check serve makes when it loads them:
the YAML and its types (every wrong value and unknown field, with the field
meant), the compiler's field checks, key settings (an inline JWKS must parse),
conflicts between policies and host ownership by namespace. Key sets are not
fetched and Secrets are not read. Documents of other kinds are skipped with a
warning.

Every problem is one line: FILE:LINE: NAMESPACE/NAME: FIELD: message (the
line when it is known). -o json prints one JSON object instead.

Exit status: 0 all valid, 1 any error (a missing path included), 2 a usage
error (no argument, an unknown flag or output format).`,
		Example: `  tollgate validate config/samples
  tollgate validate -o json policies/ extra.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return flagNames{cmd.Flags()}.errorf("output", output, "want text or json")
			}
			keys := offlineKeys()
			defer keys.Close()
			set, problems, n, err := loadPolicyFiles(cmd.Context(), loadOptions{paths: args, keys: keys, crossNamespaceHosts: crossNamespaceHosts})
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			defer set.Close()
			errs := countErrors(problems)
			if output == "json" {
				if err := writeValidateJSON(cmd.OutOrStdout(), problems, n, errs); err != nil {
					return &exitError{code: 2, err: fmt.Errorf("write output: %w", err)}
				}
				if errs > 0 || n == 0 {
					return &exitError{code: 1, err: errors.New("")}
				}
				return nil
			}
			printProblems(cmd.ErrOrStderr(), problems)
			if errs > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d error(s) found", errs)}
			}
			if n == 0 {
				return &exitError{code: 1, err: errors.New("no AuthPolicy found")}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d policies valid\n", n)
			return nil
		},
	}
	cmd.Flags().BoolVar(&crossNamespaceHosts, "cross-namespace-hosts", false, "let policies of any namespace share hosts (single-tenant), as serve --cross-namespace-hosts")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text (problems on stderr) or json (one object on stdout)")
	return cmd
}

// validateResult is the JSON form of validate's findings. Its field names
// are a stable interface for scripts: every field is always present.
type validateResult struct {
	// Valid is true when no error was found and some policy was.
	Valid    bool `json:"valid"`
	Policies int  `json:"policies"`
	Errors   int  `json:"errors"`
	Warnings int  `json:"warnings"`
	// Problems are in file order, then line order.
	Problems []validateProblem `json:"problems"`
}

type validateProblem struct {
	File string `json:"file"`
	// Line is 0 when unknown.
	Line    int    `json:"line"`
	Object  string `json:"object"`
	Field   string `json:"field"`
	Message string `json:"message"`
	// Severity is "error" or "warning".
	Severity string `json:"severity"`
}

func writeValidateJSON(w io.Writer, problems []policyfile.Problem, policies, errs int) error {
	r := validateResult{
		Valid: errs == 0 && policies > 0, Policies: policies, Errors: errs, Warnings: len(problems) - errs,
		Problems: make([]validateProblem, len(problems)),
	}
	for i, p := range problems {
		sev := "error"
		if p.Warning {
			sev = "warning"
		}
		r.Problems[i] = validateProblem{File: p.File, Line: p.Line, Object: p.Object, Field: p.Field, Message: p.Message, Severity: sev}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
