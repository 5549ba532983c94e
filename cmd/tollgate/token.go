package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/pkg/devkey"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
)

// Defaults of `tollgate token`: they fit config/samples, whose policy uses
// the Better Auth preset with baseURL http://localhost:3000.
const (
	defaultDevIssuer   = "http://localhost:3000"
	defaultDevAudience = "http://localhost:3000"
	defaultDevAlg      = "EdDSA"
	defaultJWKSAddr    = "127.0.0.1:3000"
	jwksShutdownGrace  = 5 * time.Second
)

// tokenOptions holds the flags of `tollgate token`.
type tokenOptions struct {
	keyFile string
	sub     string
	claims  []string
	ttl     time.Duration
	iss     string
	aud     string
	alg     string
}

func newTokenCommand() *cobra.Command {
	var o tokenOptions
	cmd := &cobra.Command{
		Use:   "token --sub SUBJECT [flags]",
		Short: "Mint a development token (the signing key is generated on first use)",
		Long: `Mint a signed token for trying tollgate without an identity provider.

The key file is generated on first use (mode 0600), with its public JWKS next
to it as ` + devkey.JWKSFileName + `. The defaults fit config/samples: issuer and
audience http://localhost:3000, EdDSA; run "tollgate token serve-jwks" so the
sample policy can fetch the keys.

--claim values are parsed as JSON when they are valid JSON (42, true,
["a","b"]), else taken as strings; they may override iss, aud, sub, iat, exp.`,
		Example: `  tollgate token --sub alice
  tollgate token --sub bob --claim role=admin --claim plan=premium --ttl 1h`,
		Args: subcommandArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runToken(cmd, &o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.keyFile, "key", devkey.DefaultKeyFile, "signing key file (generated when missing)")
	f.StringVar(&o.sub, "sub", "", "subject (\"sub\" claim)")
	f.StringArrayVar(&o.claims, "claim", nil, "extra claim name=value (repeatable; JSON values are decoded)")
	f.DurationVar(&o.ttl, "ttl", 15*time.Minute, "lifetime (\"exp\" = now + ttl); 0 omits exp, for testing: tollgate denies such tokens (missing_exp)")
	f.StringVar(&o.iss, "iss", defaultDevIssuer, "issuer (\"iss\" claim)")
	f.StringVar(&o.aud, "aud", defaultDevAudience, "audience (\"aud\" claim; empty for none)")
	f.StringVar(&o.alg, "alg", defaultDevAlg, "algorithm of a generated key; an HS secret may also sign HS384/HS512")
	_ = cmd.MarkFlagRequired("sub")
	cmd.AddCommand(newTokenKeygenCommand(), newTokenServeJWKSCommand())
	return cmd
}

func runToken(cmd *cobra.Command, o *tokenOptions) error {
	if o.ttl < 0 {
		return flagNames{cmd.Flags()}.errorf("ttl", o.ttl, "must not be negative (0 mints a token without exp, which tollgate denies as missing_exp)")
	}
	extra, err := devkey.ParseClaims(o.claims)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	// An unknown --alg is a usage error (exit 2) whether or not the key
	// file exists yet, and no key is generated for it.
	if _, err := jwt.ParseAlgorithm(o.alg); err != nil {
		return flagNames{cmd.Flags()}.errorf("alg", o.alg, "%v", err)
	}
	key, err := ensureKey(cmd, o.keyFile, o.alg)
	if err != nil {
		return err
	}
	if cmd.Flags().Changed("alg") {
		if key, err = key.WithAlg(o.alg); err != nil {
			return &exitError{code: 2, err: err}
		}
	}
	claims := map[string]any{"sub": o.sub}
	if o.iss != "" {
		claims["iss"] = o.iss
	}
	if o.aud != "" {
		claims["aud"] = o.aud
	}
	maps.Copy(claims, extra)
	tok, err := key.Mint(claims, o.ttl)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
	return err
}

// ensureKey loads keyFile, generating an alg key when it is missing, and
// says so on stderr.
func ensureKey(cmd *cobra.Command, keyFile, alg string) (*devkey.Key, error) {
	key, created, err := devkey.Ensure(keyFile, alg)
	if err != nil {
		return nil, &exitError{code: 1, err: err}
	}
	if created {
		fmt.Fprintf(cmd.ErrOrStderr(), "tollgate: generated a %s key in %s%s\n", key.Alg(), keyFile, jwksNote(key, devkey.JWKSPath(keyFile)))
	}
	return key, nil
}

func jwksNote(key *devkey.Key, jwksFile string) string {
	if key.Symmetric() {
		return " (an HS secret: the exact bytes a secretRef must hold)"
	}
	return "; public JWKS in " + jwksFile
}

func newTokenKeygenCommand() *cobra.Command {
	var (
		keyFile, jwksFile, alg string
		force                  bool
	)
	cmd := &cobra.Command{
		Use:   "keygen [flags]",
		Short: "Generate a signing key file and its public JWKS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if jwksFile == "" {
				jwksFile = devkey.JWKSPath(keyFile)
			}
			key, err := devkey.Generate(alg)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if err := key.Save(keyFile, jwksFile, force); err != nil {
				if errors.Is(err, devkey.ErrExists) {
					err = fmt.Errorf("%w (use --force to replace it)", err)
				}
				return &exitError{code: 1, err: err}
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "wrote a %s key to %s%s\n", key.Alg(), keyFile, jwksNote(key, jwksFile))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "key", devkey.DefaultKeyFile, "key file to write (mode 0600)")
	f.StringVar(&jwksFile, "jwks", "", "public JWKS file to write (default: "+devkey.JWKSFileName+" next to the key)")
	f.StringVar(&alg, "alg", defaultDevAlg, "EdDSA, ES256/384/512, RS256/384/512, PS256/384/512 or HS256/384/512")
	f.BoolVar(&force, "force", false, "replace an existing key file")
	return cmd
}

func newTokenServeJWKSCommand() *cobra.Command {
	var keyFile, addr string
	cmd := &cobra.Command{
		Use:   "serve-jwks [flags]",
		Short: "Serve the key's public JWKS at " + devkey.BetterAuthJWKSPath + " and " + devkey.WellKnownJWKSPath,
		Long: `Serve the public JWKS of the development key over HTTP, at the path Better
Auth uses (` + devkey.BetterAuthJWKSPath + `), so config/samples verifies development tokens
unmodified, and at ` + devkey.WellKnownJWKSPath + `. Stops on SIGINT or SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := ensureKey(cmd, keyFile, defaultDevAlg)
			if err != nil {
				return err
			}
			jwks, err := key.PublicJWKS()
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			return serveJWKS(cmd, addr, keyFile, jwks)
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "key", devkey.DefaultKeyFile, "key file (generated when missing)")
	f.StringVar(&addr, "addr", defaultJWKSAddr, "listen address")
	return cmd
}

// serveJWKS serves jwks on addr until the command's context ends, then
// shuts down gracefully.
func serveJWKS(cmd *cobra.Command, addr, keyFile string, jwks []byte) error {
	ctx := cmd.Context()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("serve-jwks: %w", err)}
	}
	srv := &http.Server{Handler: devkey.Handler(jwks), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(cmd.ErrOrStderr(), "tollgate: serving the JWKS of %s at http://%s%s\n", keyFile, ln.Addr(), devkey.BetterAuthJWKSPath)

	select {
	case err := <-served:
		return &exitError{code: 1, err: fmt.Errorf("serve-jwks: %w", err)}
	case <-ctx.Done():
	}
	// The command context is already cancelled; the grace period needs a
	// context of its own.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return &exitError{code: 1, err: fmt.Errorf("serve-jwks: shutdown: %w", err)}
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return &exitError{code: 1, err: fmt.Errorf("serve-jwks: %w", err)}
	}
	return nil
}
