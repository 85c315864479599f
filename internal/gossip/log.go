package gossip

import (
	"context"
	"log/slog"
	"strings"
)

// logWriter adapts memberlist's "[LEVEL] memberlist: message" log lines to
// slog records at the matching level.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	level, msg := parseLogLine(string(p))
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
}

var logLevels = map[string]slog.Level{
	"TRACE":   slog.LevelDebug,
	"DEBUG":   slog.LevelDebug,
	"INFO":    slog.LevelInfo,
	"WARN":    slog.LevelWarn,
	"WARNING": slog.LevelWarn,
	"ERR":     slog.LevelError,
	"ERROR":   slog.LevelError,
}

// parseLogLine splits a memberlist line into level and message; lines
// without a known level tag are info.
func parseLogLine(line string) (slog.Level, string) {
	line = strings.TrimSpace(line)
	level := slog.LevelInfo
	if i := strings.Index(line, "["); i >= 0 {
		if j := strings.Index(line[i:], "] "); j > 0 {
			if l, ok := logLevels[line[i+1:i+j]]; ok {
				level, line = l, line[i+j+2:]
			}
		}
	}
	return level, strings.TrimPrefix(line, "memberlist: ")
}
