package server_test

import (
	"fmt"
	"strings"
)

// A promSelector is one metric selector of a PromQL expression.
type promSelector struct {
	metric   string
	matchers []promMatcher
}

// A promMatcher is one label matcher of a selector.
type promMatcher struct{ label, op, value string }

// A promQuery is what an expression reads: its selectors, and the label
// names it groups or matches by (by, without, on, ignoring, group_left,
// group_right), which must exist on the series it reads.
type promQuery struct {
	selectors []promSelector
	grouping  []string
}

// promAggregations are PromQL's aggregation operators, which take a by or
// without clause after their name as well as after their arguments.
var promAggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
}

// promKeywords are identifiers that are neither metrics nor functions.
var promKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "and": true, "or": true, "unless": true, "offset": true, "start": true, "end": true,
	"inf": true, "nan": true, "atan2": true,
}

// parsePromQL extracts the selectors and grouping labels of a PromQL
// expression, or of a Grafana label_values(metric, label) query. It is a
// lexer, not a parser: it knows which identifiers are metric names
// (neither keywords nor followed by "(") and skips strings, numbers,
// durations in brackets and Grafana variables ($x, ${x}). That is enough
// to check that a dashboard or an alert queries what tollgate serves.
func parsePromQL(expr string) (promQuery, error) {
	var q promQuery
	if rest, ok := strings.CutPrefix(strings.TrimSpace(expr), "label_values("); ok {
		args, _, ok := strings.Cut(rest, ")")
		if !ok {
			return q, fmt.Errorf("label_values without )")
		}
		parts := strings.Split(args, ",")
		label := strings.TrimSpace(parts[len(parts)-1])
		q.grouping = append(q.grouping, label)
		if len(parts) == 2 {
			sub, err := parsePromQL(parts[0])
			if err != nil {
				return q, err
			}
			q.selectors = sub.selectors
		}
		return q, nil
	}
	l := &promLexer{s: expr}
	for {
		l.space()
		if l.done() {
			return q, nil
		}
		c := l.s[l.i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			if _, err := l.str(); err != nil {
				return q, err
			}
		case c == '[':
			end := strings.IndexByte(l.s[l.i:], ']')
			if end < 0 {
				return q, fmt.Errorf("unclosed [ at %d", l.i)
			}
			l.i += end + 1
		case c == '$':
			l.variable()
		case c == '{':
			m, err := l.matchers()
			if err != nil {
				return q, err
			}
			q.selectors = append(q.selectors, promSelector{matchers: m})
		case isDigit(c) || c == '.' && l.i+1 < len(l.s) && isDigit(l.s[l.i+1]):
			l.i++
			for !l.done() && (isIdent(l.s[l.i]) || l.s[l.i] == '.') {
				l.i++
			}
		case isIdentStart(c):
			id := l.ident()
			l.space()
			next := byte(0)
			if !l.done() {
				next = l.s[l.i]
			}
			switch {
			case id == "by" || id == "without" || id == "on" || id == "ignoring" || id == "group_left" || id == "group_right":
				if next == '(' {
					labels, err := l.labelList()
					if err != nil {
						return q, err
					}
					q.grouping = append(q.grouping, labels...)
				}
			case promKeywords[id], promAggregations[id], next == '(':
				// an operator, or a function or aggregation call
			default:
				sel := promSelector{metric: id}
				if next == '{' {
					m, err := l.matchers()
					if err != nil {
						return q, err
					}
					sel.matchers = m
				}
				q.selectors = append(q.selectors, sel)
			}
		default:
			l.i++ // operators, parentheses, commas
		}
	}
}

type promLexer struct {
	s string
	i int
}

func (l *promLexer) done() bool { return l.i >= len(l.s) }

func (l *promLexer) space() {
	for !l.done() && strings.IndexByte(" \t\r\n", l.s[l.i]) >= 0 {
		l.i++
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
func isIdent(c byte) bool { return isIdentStart(c) || isDigit(c) }

func (l *promLexer) ident() string {
	start := l.i
	for !l.done() && isIdent(l.s[l.i]) {
		l.i++
	}
	return l.s[start:l.i]
}

// variable skips a Grafana variable: $name or ${name...}.
func (l *promLexer) variable() {
	l.i++
	if !l.done() && l.s[l.i] == '{' {
		if end := strings.IndexByte(l.s[l.i:], '}'); end >= 0 {
			l.i += end + 1
			return
		}
	}
	l.ident()
}

// str reads a quoted string; Go's escapes, which PromQL's are.
func (l *promLexer) str() (string, error) {
	quote := l.s[l.i]
	var b strings.Builder
	for l.i++; !l.done(); l.i++ {
		c := l.s[l.i]
		switch {
		case c == quote:
			l.i++
			return b.String(), nil
		case c == '\\' && quote != '`' && l.i+1 < len(l.s):
			l.i++
			b.WriteByte(l.s[l.i])
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("unterminated string in %q", l.s)
}

// matchers reads {label op "value", ...}.
func (l *promLexer) matchers() ([]promMatcher, error) {
	l.i++ // {
	var out []promMatcher
	for {
		l.space()
		if l.done() {
			return nil, fmt.Errorf("unclosed { in %q", l.s)
		}
		switch c := l.s[l.i]; {
		case c == '}':
			l.i++
			return out, nil
		case c == ',':
			l.i++
			continue
		case c == '"':
			name, err := l.str() // a quoted metric name or label
			if err != nil {
				return nil, err
			}
			out = append(out, promMatcher{label: name})
			continue
		case !isIdentStart(c):
			return nil, fmt.Errorf("unexpected %q in matchers of %q", c, l.s)
		}
		m := promMatcher{label: l.ident()}
		l.space()
		for _, op := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(l.s[l.i:], op) {
				m.op = op
				l.i += len(op)
				break
			}
		}
		if m.op == "" {
			return nil, fmt.Errorf("no operator after label %s in %q", m.label, l.s)
		}
		l.space()
		if l.done() || strings.IndexByte("\"'`", l.s[l.i]) < 0 {
			return nil, fmt.Errorf("label %s: value is not a string in %q", m.label, l.s)
		}
		v, err := l.str()
		if err != nil {
			return nil, err
		}
		m.value = v
		out = append(out, m)
	}
}

// labelList reads (label, ...).
func (l *promLexer) labelList() ([]string, error) {
	l.i++ // (
	var out []string
	for {
		l.space()
		if l.done() {
			return nil, fmt.Errorf("unclosed label list in %q", l.s)
		}
		switch c := l.s[l.i]; {
		case c == ')':
			l.i++
			return out, nil
		case c == ',':
			l.i++
		case isIdentStart(c):
			out = append(out, l.ident())
		default:
			return nil, fmt.Errorf("unexpected %q in label list of %q", c, l.s)
		}
	}
}
