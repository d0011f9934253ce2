package mqtt

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

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
// After a failed dial it warns "trying next" (the bus has one broker),
// and a first connect that fails logs "Failed to connect to a broker"
// while New returns the error to its caller, which logs it.
var routineLines = []string{
	"[store]",
	"[client]   Connect comms goroutine - error triggered",
	"[client]   internalConnLost unexpected status: disconnection already in progress",
	"[client]   failed to connect to broker, trying next",
	"[client]   Failed to connect to a broker",
}

// dialFailurePrefixes start the error text of a dial that reached no
// broker: Go's net.OpError of a TCP or Unix dial (refused, timed out,
// host not found) and the SOCKS proxy's error. paho 1.5.1 logs the text
// at ERROR on every connect and reconnect attempt. TLS and MQTT
// handshake errors are not among them, so they stay at ERROR.
// isDialFailure also counts a connection that closed before CONNACK.
var dialFailurePrefixes = []string{"dial ", "socks connect "}

// dialFailureWarnInterval is how often one failed-dial message is logged
// at WARN. While the broker is down paho retries at least every
// maxReconnectInterval (10 s) and the bus logs each attempt, so the
// repeats in between go to DEBUG.
const dialFailureWarnInterval = 10 * time.Minute

// dialFailureLimiter rate-limits the failed-dial messages of all clients
// of the process, because paho's loggers are package-wide.
var dialFailureLimiter = repeatLimiter{interval: dialFailureWarnInterval}

// maxRepeatKeys bounds the messages a repeatLimiter tracks. The dial
// errors of one process name a few broker addresses.
const maxRepeatKeys = 64

// repeatLimiter lets a message through once per interval and counts the
// repeats it holds back.
type repeatLimiter struct {
	interval time.Duration

	mu   sync.Mutex
	seen map[string]*repeatState
}

type repeatState struct {
	lastAllowed time.Time
	held        int
}

// allow reports whether text is due for logging at now, and how many
// repeats of it were held back since it was last allowed.
func (r *repeatLimiter) allow(text string, now time.Time) (ok bool, held int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil || len(r.seen) >= maxRepeatKeys {
		r.seen = map[string]*repeatState{}
	}
	st := r.seen[text]
	if st == nil {
		r.seen[text] = &repeatState{lastAllowed: now}
		return true, 0
	}
	if now.Sub(st.lastAllowed) < r.interval {
		st.held++
		return false, 0
	}
	held = st.held
	st.lastAllowed, st.held = now, 0
	return true, held
}

// closedBeforeConnackSuffixes end paho's "[net] connect got error" line
// when the connection closed before the broker's CONNACK: a broker that
// is starting or stopping, or a TCP proxy whose broker is down (Docker,
// Kubernetes). paho retries such an attempt as it retries a failed dial.
var closedBeforeConnackSuffixes = []string{" EOF", ": connection reset by peer", ": broken pipe", ": i/o timeout"}

func isDialFailure(text string) bool {
	if rest, ok := strings.CutPrefix(text, "[net]"); ok {
		rest = strings.TrimSpace(rest)
		if !strings.HasPrefix(rest, "connect got error ") {
			return false
		}
		for _, suffix := range closedBeforeConnackSuffixes {
			if strings.HasSuffix(rest, suffix) {
				return true
			}
		}
		return false
	}
	rest, ok := strings.CutPrefix(text, "[client]")
	if !ok {
		return false
	}
	rest = strings.TrimSpace(rest)
	for _, prefix := range dialFailurePrefixes {
		if strings.HasPrefix(rest, prefix) {
			return true
		}
	}
	return false
}

func (l libraryLogger) write(text string) {
	text = strings.TrimSpace(text)
	level := l.level
	attrs := []any{"library", "paho.mqtt.golang"}
	for _, prefix := range routineLines {
		if strings.HasPrefix(text, prefix) {
			level = slog.LevelDebug
			break
		}
	}
	if level > slog.LevelDebug && isDialFailure(text) {
		// A broker that is down or restarting: expected, and retried.
		level = slog.LevelDebug
		if ok, held := dialFailureLimiter.allow(localAddress.ReplaceAllString(text, ""), time.Now()); ok {
			level = slog.LevelWarn
			if held > 0 {
				attrs = append(attrs, "repeats_logged_at_debug", held)
			}
		}
	}
	l.log.Log(context.Background(), level, text, attrs...)
}

// localAddress matches the local end of a connection in a Go network
// error ("read tcp 127.0.0.1:52640->127.0.0.1:1883"). Each reconnect
// has a new local port, so the rate limit leaves it out.
var localAddress = regexp.MustCompile(`\S+->`)

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
