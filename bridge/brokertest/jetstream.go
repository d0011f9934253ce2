package brokertest

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStreamClient connects to the NATS server at url and returns a
// JetStream client on that connection, for a test that inspects or
// deletes streams, buckets and consumers. The connection closes when the
// test ends.
func JetStreamClient(tb testing.TB, url string) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatalf("connect to NATS server %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("set up JetStream on the connection to %s: %v", url, err)
	}
	return js
}
