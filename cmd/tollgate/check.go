package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
)

// checkOptions holds the flags of `tollgate check`.
type checkOptions struct {
	policyDirs     []string
	policyFiles    []string
	secretsDir     string
	method         string
	path           string
	host           string
	headers        []string
	token          string
	sourceIP       string
	policyKey      string
	defaultAction  string
	normalizePaths bool
	output         string
	timeout        time.Duration
	crossNSHosts   bool
	// names names flags in errors as they were given.
	names flagNames
}

func newCheckCommand() *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check --policy-dir DIR --path PATH [flags]",
		Short: "Decide one request offline and explain why; exit 0 allow, 1 deny, 2 when it cannot decide",
		Long: `Decide one request against policy files, as the server would, and explain the
decision: the policy and rule, each check's outcome, the headers that would be
set upstream, removed, and returned to the client, and the deny body.

No server and no Redis are needed (quotas count in memory, so one request never
exhausts them); remote JWKS are fetched. Exit status: 0 allow, 1 deny, 2 when
no decision could be made, with the cause on the first line of stderr: a usage
error, a policy error, no policy at all, or verification keys that could not
be had (an unreachable JWKS, a missing secret).`,
		Example: `  tollgate check --policy-dir config/samples --path /api/users/alice/tasks/1 --token "$(tollgate token --sub alice)"
  tollgate check --policy-dir config/samples --method POST --path /api/health -o json`,
		// Not cobra.NoArgs: its error quotes the argument, which may be a
		// token given without --token.
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError("check takes no arguments, only flags (%d given)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.names = flagNames{cmd.Flags()}
			return runCheck(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), &o)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.policyDirs, "policy-dir", nil, "directory of AuthPolicy YAML files (repeatable or comma-separated)")
	f.StringArrayVar(&o.policyFiles, "policy-file", nil, "AuthPolicy YAML file (repeatable)")
	f.StringVar(&o.secretsDir, "secrets-dir", "", "secretRef{name,key} of namespace NS reads DIR/NS/NAME/KEY")
	f.StringVar(&o.method, "method", "GET", "request method")
	f.StringVar(&o.path, "path", "", "request path, with query (required)")
	f.StringVar(&o.host, "host", "", "request host (:authority); default: the host header, if given, else "+defaultCheckHost)
	f.StringArrayVar(&o.headers, "header", nil, "request header name=value (repeatable; names are lower-cased)")
	f.StringVar(&o.token, "token", "", "bearer token (sent as authorization: Bearer TOKEN)")
	f.StringVar(&o.sourceIP, "source-ip", "127.0.0.1", "address of the peer that sent the request to the proxy")
	f.StringVar(&o.policyKey, "policy", "", "select policy NAMESPACE/NAME explicitly, as Envoy's context_extensions[\"policy\"]")
	f.StringVar(&o.defaultAction, "default-action", "deny", "requests that match no policy: deny or allow")
	f.BoolVar(&o.normalizePaths, "normalize-paths", false, normalizePathsUsage)
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "bound on fetching remote JWKS")
	f.BoolVar(&o.crossNSHosts, "cross-namespace-hosts", false, "let policies of any namespace share hosts (single-tenant), as serve --cross-namespace-hosts")
	_ = cmd.MarkFlagRequired("path")
	return cmd
}

// defaultCheckHost is the host of a check that names none: it matches
// policies for any host, as an absent host used to, and is well-formed.
const defaultCheckHost = "localhost"

// normalizePathsUsage documents --normalize-paths of serve and check.
const normalizePathsUsage = "resolve dot segments and merge slashes (RFC 3986 order) instead of denying paths not in normal form 400; only behind a proxy that forwards the path it normalized"

// usageError is an exit status 2 error.
func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

func runCheck(ctx context.Context, stdout, stderr io.Writer, o *checkOptions) error {
	req, err := o.request()
	if err != nil {
		return err
	}
	if o.output != "text" && o.output != "json" {
		return o.names.errorf("output", o.output, "want text or json")
	}
	if o.defaultAction != "deny" && o.defaultAction != "allow" {
		return o.names.errorf("default-action", o.defaultAction, "want deny or allow")
	}
	paths := append(append([]string(nil), o.policyDirs...), o.policyFiles...)
	if len(paths) == 0 {
		return usageError("no policies: give --policy-dir or --policy-file")
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	// Key warnings (an unreachable JWKS URI, a skipped key; never token
	// data) are kept until the decision shows whether they matter: a
	// request that never needed keys prints none.
	var keyLog lockedBuffer
	jopts := jwt.Options{
		CacheSize: -1,
		Logger:    slog.New(slog.NewTextHandler(&keyLog, &slog.HandlerOptions{Level: slog.LevelWarn, ReplaceAttr: dropTime})),
		Secrets:   noSecretsDir{},
	}
	if o.secretsDir != "" {
		jopts.Secrets = jwt.NewDirSecrets(o.secretsDir, nil)
	}
	keys := jwt.NewManager(jopts)
	defer keys.Close()
	quota := ratelimit.NewMemory(ratelimit.MemoryOptions{SweepInterval: -1})
	defer quota.Close()
	engine := decision.NewEngine(decision.Options{Quota: quota, DefaultAllow: o.defaultAction == "allow", NormalizePaths: o.normalizePaths})
	set, problems, n, err := loadPolicyFiles(ctx, loadOptions{paths: paths, keys: keys, publish: func(s *decision.Snapshot, _ []string) { engine.Swap(s) }, crossNamespaceHosts: o.crossNSHosts})
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer set.Close()
	if errs := countErrors(problems); errs > 0 {
		return &exitError{code: 2, err: fmt.Errorf("cannot decide: %d error(s) in the policies\n%s", errs, problemLines(problems))}
	}
	if n == 0 {
		msg := "cannot decide: no AuthPolicy found in " + strings.Join(paths, ", ")
		if len(problems) > 0 {
			msg += "\n" + problemLines(problems)
		}
		return &exitError{code: 2, err: errors.New(msg)}
	}
	printProblems(stderr, problems) // warnings only

	d := engine.Decide(ctx, req)
	if d.Reason == string(jwt.ReasonKeysUnavailable) {
		return &exitError{code: 2, err: fmt.Errorf("cannot decide: the verification keys of policy %s are unavailable: %w", d.Policy, keysCause(ctx, engine, keys, d.Policy))}
	}
	if r := jwt.Reason(d.Reason); r != jwt.ReasonMissing && slices.Contains(jwt.Reasons(), r) {
		// The token met the keys: what was said of them may explain why.
		_, _ = io.WriteString(stderr, keyLog.String())
	}
	if o.output == "json" {
		err = writeCheckJSON(stdout, &d)
	} else {
		err = writeCheckText(stdout, &d)
	}
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("write output: %w", err)}
	}
	if !d.Allowed {
		// The output already says DENY and why; nothing more for stderr.
		return &exitError{code: 1, err: errors.New("")}
	}
	return nil
}

// request builds the decision request from the flags. Its errors never
// quote a header value or the token.
func (o *checkOptions) request() (*decision.Request, error) {
	req := &decision.Request{
		// The method goes to the engine exactly as given, as the server's
		// does: the engine denies what is not a method token.
		Method:    o.method,
		Host:      o.host,
		Path:      o.path,
		Headers:   make(map[string]string, len(o.headers)+1),
		PolicyKey: o.policyKey,
		Explain:   true,
	}
	if req.Path == "" {
		return nil, o.names.errorf("path", o.path, "is empty")
	}
	ip, err := netip.ParseAddr(o.sourceIP)
	if err != nil {
		return nil, o.names.errorf("source-ip", o.sourceIP, "not an IP address")
	}
	req.SourceIP = ip.String()
	for i, h := range o.headers {
		name, value, ok := strings.Cut(h, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || name == "" {
			// The argument may hold a credential: name it by position only.
			return nil, usageError("%s #%d: want name=value", o.names.of("header"), i+1)
		}
		if prev, dup := req.Headers[name]; dup {
			value = prev + "," + value // as proxies merge repeated headers
		}
		req.Headers[name] = value
	}
	if o.token != "" {
		if _, dup := req.Headers["authorization"]; dup {
			return nil, usageError("--token and --header authorization=... both set the authorization header")
		}
		req.Headers["authorization"] = "Bearer " + o.token
	}
	if req.Host == "" {
		req.Host = req.Headers["host"]
	}
	if req.Host == "" {
		req.Host = defaultCheckHost
	}
	return req, nil
}

// checkResult is the JSON form of a decision. Its field names are a
// stable interface for scripts: every field is always present.
type checkResult struct {
	Allowed bool   `json:"allowed"`
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Policy  string `json:"policy"`
	Rule    string `json:"rule"`
	Subject string `json:"subject"`
	// DryRun is true when a dryRun policy was evaluated beside the
	// answer; the dryRun* fields are its would-be decision (empty, 0 and
	// false when none was).
	DryRun          bool              `json:"dryRun"`
	WouldDeny       bool              `json:"wouldDeny"`
	DryRunPolicy    string            `json:"dryRunPolicy"`
	DryRunRule      string            `json:"dryRunRule"`
	DryRunStatus    int               `json:"dryRunStatus"`
	DryRunReason    string            `json:"dryRunReason"`
	Steps           []checkStep       `json:"steps"`
	UpstreamHeaders map[string]string `json:"upstreamHeaders"`
	RemoveHeaders   []string          `json:"removeHeaders"`
	ResponseHeaders map[string]string `json:"responseHeaders"`
	// Body is the JSON deny body; null when allowed.
	Body json.RawMessage `json:"body"`
}

type checkStep struct {
	Name    string `json:"name"`
	Outcome string `json:"outcome"`
	Detail  string `json:"detail"`
}

func writeCheckJSON(w io.Writer, d *decision.Decision) error {
	r := checkResult{
		Allowed: d.Allowed, Status: d.Status, Code: d.Code, Reason: d.Reason, Message: d.Message,
		Policy: d.Policy, Rule: d.Rule, Subject: d.Subject,
		DryRun: d.DryRun.Evaluated(), WouldDeny: d.DryRun.WouldDeny(),
		DryRunPolicy: d.DryRun.Policy, DryRunRule: d.DryRun.Rule, DryRunStatus: d.DryRun.Status, DryRunReason: d.DryRun.Reason,
		Steps:           make([]checkStep, 0, len(d.Steps)),
		UpstreamHeaders: headerMap(d.UpstreamHeaders),
		RemoveHeaders:   append([]string{}, d.RemoveHeaders...),
		ResponseHeaders: headerMap(d.ResponseHeaders),
	}
	for _, s := range d.Steps {
		r.Steps = append(r.Steps, checkStep(s))
	}
	if !d.Allowed {
		r.Body = json.RawMessage(d.Body())
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// headerMap merges headers into a map, joining repeated names with ", ".
func headerMap(hs []decision.Header) map[string]string {
	m := make(map[string]string, len(hs))
	for _, h := range hs {
		if prev, ok := m[h.Name]; ok {
			m[h.Name] = prev + ", " + h.Value
			continue
		}
		m[h.Name] = h.Value
	}
	return m
}

func writeCheckText(w io.Writer, d *decision.Decision) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if d.Allowed {
		fmt.Fprintf(tw, "ALLOW %d\n", d.Status)
	} else {
		fmt.Fprintf(tw, "DENY %d %s: %s\n", d.Status, d.Code, d.Message)
	}
	fmt.Fprintf(tw, "policy:\t%s\n", orDash(d.Policy))
	fmt.Fprintf(tw, "rule:\t%s\n", orDash(d.Rule))
	fmt.Fprintf(tw, "reason:\t%s\n", d.Reason)
	if d.Subject != "" {
		fmt.Fprintf(tw, "subject:\t%s\n", d.Subject)
	}
	if dr := &d.DryRun; dr.Evaluated() {
		would := "would allow"
		if dr.WouldDeny() {
			would = fmt.Sprintf("would deny %d", dr.Status)
		}
		fmt.Fprintf(tw, "dry run:\t%s rule %s: %s (%s)\n", dr.Policy, orDash(dr.Rule), would, dr.Reason)
	}
	fmt.Fprintln(tw, "steps:")
	for _, s := range d.Steps {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Name, s.Outcome, s.Detail)
	}
	if len(d.UpstreamHeaders) > 0 {
		fmt.Fprintln(tw, "set upstream:")
		for _, h := range d.UpstreamHeaders {
			fmt.Fprintf(tw, "  %s: %s\n", h.Name, h.Value)
		}
	}
	if len(d.RemoveHeaders) > 0 {
		fmt.Fprintln(tw, "remove upstream:")
		for _, name := range d.RemoveHeaders {
			fmt.Fprintf(tw, "  %s\n", name)
		}
	}
	if len(d.ResponseHeaders) > 0 {
		fmt.Fprintln(tw, "response headers:")
		for _, h := range d.ResponseHeaders {
			fmt.Fprintf(tw, "  %s: %s\n", h.Name, h.Value)
		}
	}
	if !d.Allowed {
		fmt.Fprintf(tw, "body:\n  %s\n", d.Body())
	}
	return tw.Flush()
}

// dropTime removes the timestamp from log records: check runs once and
// its output is read by a person or compared by a script.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// keysCause says why the keys of policy (namespace/name) are unavailable:
// the error of the last attempt to have them.
func keysCause(ctx context.Context, engine *decision.Engine, keys *jwt.Manager, policy string) error {
	for _, p := range engine.Snapshot().Policies() {
		if p.Key() != policy || p.JWT == nil {
			continue
		}
		v, err := keys.Verifier(p.JWT.Config)
		if err != nil {
			return err
		}
		if err := v.WaitKeys(ctx); err != nil {
			return err
		}
	}
	return errors.New("no cause reported")
}

// noSecretsDir is check's secret resolver without --secrets-dir: it says
// which flag supplies secrets.
type noSecretsDir struct{}

func (noSecretsDir) Secret(_ context.Context, ref jwt.SecretRef) ([]byte, error) {
	return nil, fmt.Errorf("secretRef %s: give --secrets-dir DIR, where the file DIR/%s/%s/%s holds the secret", ref, ref.Namespace, ref.Name, ref.Key)
}

// lockedBuffer collects log lines from any goroutine.
type lockedBuffer struct {
	mu  sync.Mutex // mu guards buf
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
