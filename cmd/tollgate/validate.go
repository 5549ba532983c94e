package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/pkg/policyfile"
)

func newValidateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE_OR_DIR...",
		Short: "Validate AuthPolicy files; exit 0 when all are valid, 1 on any error",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			policies, problems := policyfile.Load(args...)
			for _, p := range problems {
				fmt.Fprintln(cmd.ErrOrStderr(), p.String())
			}
			if len(problems) > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d error(s) found", len(problems))}
			}
			if len(policies) == 0 {
				return &exitError{code: 1, err: errors.New("no AuthPolicy found")}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d policies valid\n", len(policies))
			return nil
		},
	}
}
