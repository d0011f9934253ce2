package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// TestWorkerRejectsJetStreamConsumerOfOtherGroup starts a worker whose
// group and printer ("a_b", "c") derive the consumer name a_b_c of group
// "a" with printer "b_c". The worker must exit with the error instead of
// taking over the other group's consumer.
func TestWorkerRejectsJetStreamConsumerOfOtherGroup(t *testing.T) {
	srv := brokertest.StartNATS(t, true, false)
	ctx := context.Background()
	owner, err := natsbus.New(ctx, natsbus.Config{URL: srv.NATSURL(), Name: "test-owner", JetStream: true}, brokertest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	if err := owner.SubscribeEvents(ctx, "b_c", "a", func(bridge.EventMessage) {}); err != nil {
		t.Fatalf("SubscribeEvents of group a: %v", err)
	}

	dir := t.TempDir()
	cfg := writeWorkerConfig(t, dir, "events:\n  subscriptions: []\n")
	args := []string{"worker", "--config", cfg, "--nats", srv.NATSURL(), "--jetstream", "--group", "a_b", "--printer", "c",
		"--metrics-listen", "", "--data-dir", filepath.Join(dir, "data")}
	var stdout, stderr strings.Builder
	if code := runMain(args, &stdout, &stderr); code == 0 {
		t.Fatalf("worker with a colliding group exited with 0, want an error; stderr:\n%s", stderr.String())
	}
	for _, want := range []string{"JetStream consumer name taken: consumer a_b_c", `group "a", printer "b_c"`, `group "a_b", printer "c"`, "--group"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr does not contain %q:\n%s", want, stderr.String())
		}
	}
}
