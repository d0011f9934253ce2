package mqtt

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// libraryLogger adapts slog to paho's printf loggers.
type libraryLogger struct {
	log   *slog.Logger
	level slog.Level
}

func (l libraryLogger) Println(v ...any) { l.write(fmt.Sprintln(v...)) }

func (l libraryLogger) Printf(format string, v ...any) { l.write(fmt.Sprintf(format, v...)) }

// routineLines are prefixes of paho 1.5.1 log lines that go to debug level.
// Its memory store warns on every clean-session connect and every SUBACK.
// It logs a connection loss as an error, which the bus logs too, and also
// a clean DISCONNECT that crosses the broker closing the connection.
var routineLines = []string{
	"[store]",
	"[client]   Connect comms goroutine - error triggered",
	"[client]   internalConnLost unexpected status: disconnection already in progress",
}

func (l libraryLogger) write(text string) {
	text = strings.TrimSpace(text)
	level := l.level
	for _, prefix := range routineLines {
		if strings.HasPrefix(text, prefix) {
			level = slog.LevelDebug
			break
		}
	}
	l.log.Log(context.Background(), level, text, "library", "paho.mqtt.golang")
}

var routeLibraryLogsOnce sync.Once

// RouteLibraryLogs points paho's package-wide ERROR, CRITICAL and WARN
// loggers at log, once per process. paho reads these variables without
// locking, so call it in main before any MQTT client starts. New calls it
// with its own logger, which has no effect once the loggers are set.
// DEBUG stays off because paho logs every packet there.
func RouteLibraryLogs(log *slog.Logger) {
	routeLibraryLogsOnce.Do(func() {
		paho.ERROR = libraryLogger{log, slog.LevelError}
		paho.CRITICAL = libraryLogger{log, slog.LevelError}
		paho.WARN = libraryLogger{log, slog.LevelWarn}
	})
}
