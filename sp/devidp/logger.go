package devidp

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/crewjam/saml/logger"
)

// slogAdapter adapts crewjam's logger.Interface, which takes printf-style
// lines, to slog. crewjam marks the level in the text ("ERROR: ...",
// "WARNING: ..."); the adapter turns that prefix into the slog level and
// logs the rest as the message, with component=samlidp.
type slogAdapter struct{ l *slog.Logger }

// levelPrefixes are the level markers crewjam puts at the start of a line.
var levelPrefixes = []struct {
	prefix string
	level  slog.Level
}{
	{"ERROR: ", slog.LevelError},
	{"WARNING: ", slog.LevelWarn},
	{"WARN: ", slog.LevelWarn},
	{"DEBUG: ", slog.LevelDebug},
}

var _ logger.Interface = slogAdapter{}

func (a slogAdapter) log(msg string) {
	msg = strings.TrimRight(msg, "\n")
	level := slog.LevelInfo
	for _, p := range levelPrefixes {
		if rest, ok := strings.CutPrefix(msg, p.prefix); ok {
			level, msg = p.level, rest
			break
		}
	}
	a.l.Log(context.Background(), level, msg, "component", "samlidp")
}

func (a slogAdapter) Printf(format string, v ...any) { a.log(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Print(v ...any)                 { a.log(fmt.Sprint(v...)) }
func (a slogAdapter) Println(v ...any)               { a.log(fmt.Sprintln(v...)) }

// Fatal, Fatalf and Fatalln log at error level and exit, as the standard
// logger does; samlidp does not call them.
func (a slogAdapter) Fatal(v ...any) { a.log("ERROR: " + fmt.Sprint(v...)); os.Exit(1) }
func (a slogAdapter) Fatalf(format string, v ...any) {
	a.log("ERROR: " + fmt.Sprintf(format, v...))
	os.Exit(1)
}
func (a slogAdapter) Fatalln(v ...any) { a.log("ERROR: " + fmt.Sprintln(v...)); os.Exit(1) }

// Panic, Panicf and Panicln log at error level and panic.
func (a slogAdapter) Panic(v ...any) {
	s := fmt.Sprint(v...)
	a.log("ERROR: " + s)
	panic(s)
}

func (a slogAdapter) Panicf(format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	a.log("ERROR: " + s)
	panic(s)
}

func (a slogAdapter) Panicln(v ...any) {
	s := fmt.Sprintln(v...)
	a.log("ERROR: " + s)
	panic(s)
}
