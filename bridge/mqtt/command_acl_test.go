package mqtt_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/mqtt"
)

// TestCommandsUnderNarrowACL runs the edge's command subscription against
// a Mosquitto whose access control grants only the command kinds, as an
// older deployment's may. Mosquitto 2.0.11 accepts the subscription to
// the whole command tree and checks each message against the ACL, so
// commands on the granted topics still arrive.
func TestCommandsUnderNarrowACL(t *testing.T) {
	acl := filepath.Join(t.TempDir(), "acl")
	rules := "topic read printbridge/p1/command/+\ntopic write printbridge/p1/command/+\n"
	if err := os.WriteFile(acl, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	url := brokertest.StartMosquittoWithOptions(t, brokertest.MosquittoOptions{Config: []string{"acl_file " + acl}}).URL()
	edge := newBus(t, mqtt.Config{URL: url})
	ctx := context.Background()

	got := brokertest.NewCollector[bridge.CommandMessage]()
	if err := edge.SubscribeCommands(ctx, "p1", got.Add); err != nil {
		t.Fatalf("SubscribeCommands under an ACL without command/#: %v", err)
	}
	sender := newBus(t, mqtt.Config{URL: url})
	if err := sender.PublishCommand(ctx, "p1", bridge.CommandGcode, []byte(`{"id":"c1","commands":["M105"]}`)); err != nil {
		t.Fatalf("PublishCommand: %v", err)
	}
	msgs := got.WaitFor(t, "the command", atLeast[bridge.CommandMessage](1))
	if msgs[0].Kind != bridge.CommandGcode {
		t.Errorf("command kind = %q, want %q", msgs[0].Kind, bridge.CommandGcode)
	}
}
