package redis

import (
	"context"
	"fmt"
	"log/slog"
)

// LibraryLogger adapts logger to go-redis's logging interface, for main to
// pass to go-redis's SetLogger once at startup (go-redis's logger is
// global to the process, so this package never sets it). go-redis logs
// such things as repeated dial failures; its messages name addresses,
// never passwords.
func LibraryLogger(logger *slog.Logger) interface {
	Printf(ctx context.Context, format string, v ...any)
} {
	return libraryLogger{logger}
}

type libraryLogger struct{ l *slog.Logger }

func (l libraryLogger) Printf(ctx context.Context, format string, v ...any) {
	l.l.WarnContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}
