package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

func newValidateCommand() *cobra.Command {
	var crossNamespaceHosts bool
	cmd := &cobra.Command{
		Use:   "validate FILE_OR_DIR...",
		Short: "Validate AuthPolicy files; exit 0 when all are valid, 1 on any error",
		Long: `Validate AuthPolicy files with every check serve makes when it loads them:
the compiler's field checks, key settings (an inline JWKS must parse), conflicts
between policies and host ownership by namespace. Key sets are not fetched and
Secrets are not read. Documents of other kinds are skipped with a warning.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys := offlineKeys()
			defer keys.Close()
			set, problems, n, err := loadPolicyFiles(cmd.Context(), loadOptions{paths: args, keys: keys, crossNamespaceHosts: crossNamespaceHosts})
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			defer set.Close()
			if errs := printProblems(cmd.ErrOrStderr(), problems); errs > 0 {
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
	return cmd
}
