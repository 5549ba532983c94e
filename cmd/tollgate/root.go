package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tollgate-dev/tollgate/pkg/version"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "tollgate",
		Short:         "Envoy external authorization: JWT verification, user isolation and quotas",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return bindEnv(cmd.Flags())
		},
	}
	root.AddCommand(
		newVersionCommand(),
		newValidateCommand(),
		newServeCommand(),
		newCheckCommand(),
		newTokenCommand(),
	)
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version.String())
			return err
		},
	}
}

// bindEnv gives every flag not set on the command line the value of
// TOLLGATE_<FLAG_IN_UPPER_SNAKE>, when that variable is set.
func bindEnv(flags *pflag.FlagSet) error {
	var err error
	flags.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := "TOLLGATE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if setErr := flags.Set(f.Name, v); setErr != nil {
			err = &exitError{code: 2, err: fmt.Errorf("%s: %w", name, setErr)}
		}
	})
	return err
}
