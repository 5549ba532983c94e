package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tollgate-dev/tollgate/internal/suggest"
)

// warnUnusedEnv writes to w one warning for each TOLLGATE_ variable of
// environ that sets no flag of cmd, so that a misspelt variable is not
// ignored silently: with the variable meant when one is near, or the
// command whose flag it sets. A command without flags of its own (tollgate
// version) reads no variable and warns about none.
func warnUnusedEnv(w io.Writer, cmd *cobra.Command, environ []string) {
	fs := cmd.Flags()
	bound := map[string]string{} // variable -> flag
	var vars []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && f.Name != "version" {
			bound[envName(f.Name)] = f.Name
			vars = append(vars, envName(f.Name))
		}
	})
	if len(bound) == 0 {
		return
	}
	var unused []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := bound[name]; !ok && strings.HasPrefix(name, envPrefix) && !slices.Contains(unused, name) {
			unused = append(unused, name)
		}
	}
	slices.Sort(unused)
	for _, name := range unused {
		msg := fmt.Sprintf("tollgate: warning: %s sets no flag of %s and is ignored", name, cmd.CommandPath())
		if meant := suggest.Nearest(name, vars); meant != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", meant)
		} else if other := commandWithVariable(cmd.Root(), name); other != "" {
			msg += fmt.Sprintf(" (it sets --%s of %s)", flagOfEnv(name), other)
		}
		fmt.Fprintln(w, msg)
	}
}

// commandWithVariable returns the path of a command under root with a
// flag that variable name sets, or "".
func commandWithVariable(root *cobra.Command, name string) string {
	var found string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if found != "" {
			return
		}
		if f := c.Flags().Lookup(flagOfEnv(name)); f != nil && envName(f.Name) == name {
			found = c.CommandPath()
			return
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return found
}

// flagOfEnv is the flag a TOLLGATE_ variable would set: TOLLGATE_POLICY_DIR
// sets --policy-dir.
func flagOfEnv(name string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, envPrefix), "_", "-"))
}
