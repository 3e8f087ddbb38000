// Package cli is the wiring shared by samlha's programs: flags that can also
// come from environment variables, --help text that names both, slog set-up,
// validation that reports every problem at once, and HTTP servers that shut
// down gracefully on SIGINT and SIGTERM.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// EnvName is the environment twin of a flag: prefix, an underscore, and the
// flag name upper-cased with dashes as underscores. EnvName("SAMLHA",
// "store-url") is "SAMLHA_STORE_URL".
func EnvName(prefix, flagName string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs, then sets every flag that was not given on the
// command line from its environment twin (see EnvName), if that is set.
// Command-line flags win over the environment, which wins over defaults.
// It installs a usage function that lists each flag with its twin.
//
// summary is printed at the top of --help: what the program does and an
// example; it should end with a newline.
func Parse(fs *flag.FlagSet, args []string, envPrefix, summary string) error {
	fs.Usage = func() { Usage(fs.Output(), fs, envPrefix, summary) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := EnvName(envPrefix, f.Name)
		v, ok := os.LookupEnv(env)
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s (for --%s): %w", env, f.Name, err))
		}
	})
	return errors.Join(errs...)
}

// Usage writes the --help text: summary, then every flag with its
// environment twin, default and description.
func Usage(w io.Writer, fs *flag.FlagSet, envPrefix, summary string) {
	fmt.Fprint(w, summary)
	fmt.Fprintf(w, "\nFlags (each can also be set by the environment variable shown; the command line wins):\n")
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	for _, f := range flags {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n      $%s", line, EnvName(envPrefix, f.Name))
		if f.DefValue != "" && f.DefValue != "[]" {
			fmt.Fprintf(w, "  (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "\n      %s\n", strings.ReplaceAll(usage, "\n", "\n      "))
	}
}

// StringList is a repeatable string flag. From the environment (or when a
// single command-line value holds them) items are separated by commas or
// newlines; empty items are dropped.
type StringList []string

// String implements flag.Value.
func (s *StringList) String() string { return strings.Join(*s, ",") }

// Set implements flag.Value: it appends the items in v.
func (s *StringList) Set(v string) error {
	for _, item := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' }) {
		if item = strings.TrimSpace(item); item != "" {
			*s = append(*s, item)
		}
	}
	return nil
}

// Problems collects configuration problems so that a program reports all of
// them at once, each naming its flag.
type Problems []string

// Addf records a problem.
func (p *Problems) Addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// Err returns nil if there are no problems, or one error listing them all.
func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("invalid configuration:\n  - %s", strings.Join(p, "\n  - "))
}

// Exit ends a program whose run returned err: status 0 for nil and for
// --help (flag.ErrHelp), otherwise the error on stderr prefixed by the
// program's name, and status 1.
func Exit(program string, err error) {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	fmt.Fprintln(os.Stderr, program+":", err)
	os.Exit(1)
}
