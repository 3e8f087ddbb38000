package redis

import (
	"context"
	"fmt"
	"log/slog"

	goredis "github.com/redis/go-redis/v9"
)

// SetLibraryLogger sends go-redis's own log lines (such as repeated dial
// failures) to logger, at level Warn. go-redis's logger is global to the
// process, so this package never sets it by itself: main calls this once
// at startup. go-redis's messages name addresses, never passwords.
func SetLibraryLogger(logger *slog.Logger) {
	goredis.SetLogger(libraryLogger{logger})
}

type libraryLogger struct{ l *slog.Logger }

func (l libraryLogger) Printf(ctx context.Context, format string, v ...any) {
	l.l.WarnContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}
