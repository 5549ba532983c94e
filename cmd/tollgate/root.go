package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tollgate-dev/tollgate/internal/suggest"
	"github.com/tollgate-dev/tollgate/pkg/version"
)

// envPrefix starts the environment variable of every flag:
// --policy-dir is TOLLGATE_POLICY_DIR.
const envPrefix = "TOLLGATE_"

// envAnnotation marks a flag whose value came from its environment
// variable; its value is the variable's name.
const envAnnotation = "tollgate.dev/env"

// envHelp ends the help of every command that has flags.
const envHelp = `{{if .HasAvailableFlags}}
Every flag can also be set by an environment variable, TOLLGATE_ and the flag
in upper snake case: --policy-dir as TOLLGATE_POLICY_DIR, --log-level as
TOLLGATE_LOG_LEVEL. A flag on the command line wins over its variable. A
TOLLGATE_ variable that sets no flag of the command is ignored, with a warning.
{{end}}`

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "tollgate",
		Short: "Envoy external authorization: JWT verification, user isolation and quotas",
		Long: `tollgate is an Envoy external-authorization service: it verifies JWTs and
enforces user isolation and quotas declared in AuthPolicy resources.

Exit status: 0 success; 1 a deny (check), invalid policies (validate) or a
failed server; 2 a usage error or a decision that could not be made.`,
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          subcommandArgs,
		// tollgate alone is a usage error: the help goes to stderr.
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return &exitError{code: 2, err: errors.New("")}
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			warnUnusedEnv(cmd.ErrOrStderr(), cmd, os.Environ())
			return bindEnv(cmd.Flags())
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetUsageTemplate(root.UsageTemplate() + envHelp)
	root.SetFlagErrorFunc(flagError)
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
		Short: "Print version, commit and Go version (also tollgate --version)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version.String())
			return err
		},
	}
}

// subcommandArgs refuses arguments of a command that only groups
// subcommands, suggesting the nearest subcommand.
func subcommandArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default, set where it looks itself
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %q?)", s[0])
	}
	return usageError("%s; see %s --help", msg, cmd.CommandPath())
}

// flagError makes a flag parse error a usage error, suggesting the nearest
// flag for an unknown one.
func flagError(cmd *cobra.Command, err error) error {
	var ne *pflag.NotExistError
	if errors.As(err, &ne) && ne.GetSpecifiedName() != "" {
		if s := suggestFlag(cmd.Flags(), ne.GetSpecifiedName()); s != "" {
			return usageError("%v (did you mean --%s?)", err, s)
		}
	}
	return &exitError{code: 2, err: err}
}

// suggestFlag returns the visible flag of fs nearest to name, or "".
func suggestFlag(fs *pflag.FlagSet, name string) string {
	var names []string
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Hidden {
			names = append(names, f.Name)
		}
	})
	return suggest.Nearest(name, names)
}

// envName returns the environment variable of a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// bindEnv gives every flag not set on the command line the value of
// TOLLGATE_<FLAG_IN_UPPER_SNAKE>, when that variable is set, and marks it
// so that errors about its value name the variable (see flagNames).
func bindEnv(flags *pflag.FlagSet) error {
	var errs []error
	flags.VisitAll(func(f *pflag.Flag) {
		// --help and --version act before this runs; they have no variable.
		if f.Changed || f.Name == "help" || f.Name == "version" {
			return
		}
		name := envName(f.Name)
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if err := flags.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, v, valueError(f, err)))
			return
		}
		_ = flags.SetAnnotation(f.Name, envAnnotation, []string{name})
	})
	if len(errs) > 0 {
		return &exitError{code: 2, err: errors.Join(errs...)}
	}
	return nil
}

// valueError is the cause of a flag.Set error, without pflag's wrapping,
// which names the flag rather than the variable.
func valueError(f *pflag.Flag, err error) error {
	var ive *pflag.InvalidValueError
	if errors.As(err, &ive) && ive.Unwrap() != nil {
		err = ive.Unwrap()
	}
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return fmt.Errorf("not a valid %s: %w", f.Value.Type(), ne.Err)
	}
	return err
}

// flagNames names flags in error messages as the user gave them: the
// environment variable when the value came from one, else --flag.
type flagNames struct{ fs *pflag.FlagSet }

func (n flagNames) of(flag string) string {
	if n.fs != nil {
		if f := n.fs.Lookup(flag); f != nil {
			if v := f.Annotations[envAnnotation]; len(v) == 1 {
				return v[0]
			}
		}
	}
	return "--" + flag
}

// errorf is a usage error whose message starts with the name of flag, as
// the user gave it, and its value: `--log-format "xml": want json or text`,
// or `TOLLGATE_LOG_FORMAT "xml": ...` when the variable set it.
func (n flagNames) errorf(flag string, value any, format string, args ...any) error {
	return usageError("%s %q: %s", n.of(flag), fmt.Sprint(value), fmt.Sprintf(format, args...))
}
