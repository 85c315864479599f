package config

import (
	"io"
	"log/slog"
)

// SlogLevel returns the slog level of lc.Level; unknown values mean info
// (Validate rejects them).
func (lc LogConfig) SlogLevel() slog.Level {
	switch lc.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// NewLogger returns a logger writing to w in lc.Format (text or json) at
// lc.Level.
func NewLogger(lc LogConfig, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: lc.SlogLevel()}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
