//go:build noembeddedbroker

package natsbus

import (
	"errors"
	"log/slog"
)

// ErrNoEmbeddedBroker is returned by StartEmbedded in a build without
// the embedded nats-server. Leaving it out makes the binary about 10 MB
// smaller, and each edge or worker process about 3 MiB smaller in memory,
// because the kernel maps most of the executable's pages.
var ErrNoEmbeddedBroker = errors.New("this printbridge was built with -tags noembeddedbroker, without the embedded NATS server that the demo runs; " +
	"build without the tag (go build ./cmd/printbridge) to run the demo, or run edge and worker against a broker")

// Embedded is a running in-process nats-server, which this build does not
// have.
type Embedded struct{}

// StartEmbedded returns ErrNoEmbeddedBroker.
func StartEmbedded(EmbeddedOptions, *slog.Logger) (*Embedded, error) { return nil, ErrNoEmbeddedBroker }

// NATSURL returns "".
func (e *Embedded) NATSURL() string { return "" }

// MQTTURL returns "".
func (e *Embedded) MQTTURL() string { return "" }

// Shutdown does nothing.
func (e *Embedded) Shutdown() {}
