package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

func init() {
	register("publish", "fire an event through a running edge (for testing automations and custom events)", runPublish)
}

// runPublish sends a command/event message to the edge, which fires the
// event with the next sequence number and the printer's context, so the
// event takes the same path as the printer's own.
func runPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.Usage = func() { printCommandUsage(fs) }
	var bus busOptions
	bus.register(fs)
	printerID := fs.String("printer", "", "printer id of the edge that fires the event")
	event := fs.String("event", "", "event name: a catalogue event (see 'printbridge events') or plugin_<id>_<name>")
	payloadJSON := fs.String("payload", "", "payload as a JSON object, such as '{\"new\": 0.4, \"old\": 0.2}'")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the edge's reply")
	if err := parseFlags(fs, args, stderr, true); err != nil {
		return err
	}
	if err := bridge.ValidatePrinterID(*printerID); err != nil {
		return fmt.Errorf("--printer: %w", err)
	}
	if *event == "" {
		return errors.New("missing --event: name the event to fire")
	}
	var payload bridge.Payload
	if *payloadJSON != "" {
		if err := json.Unmarshal([]byte(*payloadJSON), &payload); err != nil {
			return fmt.Errorf("invalid --payload %q (%v): give a JSON object, such as --payload '{\"new\": 0.4, \"old\": 0.2}'", *payloadJSON, err)
		}
	}
	if err := bridge.ValidatePayload(*event, payload); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bus.clientID = fmt.Sprintf("printbridge-publish-%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	b, err := connectBus(ctx, bus, log)
	if err != nil {
		return err
	}
	defer b.Close()

	id := "publish-" + bridge.NewEventID(time.Now())
	replies := make(chan bridge.Reply, 4)
	if err := b.SubscribeReplies(ctx, *printerID, func(data []byte) {
		var r bridge.Reply
		if json.Unmarshal(data, &r) == nil && r.ID == id && r.Final() {
			select {
			case replies <- r:
			default:
			}
		}
	}); err != nil {
		return err
	}
	cmd, _ := json.Marshal(bridge.Command{ID: id, Event: *event, Payload: payload, Source: "printbridge publish"})
	if _, err := sendCommand(ctx, b, *printerID, bridge.CommandEvent, cmd, id, replies, *timeout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s fired on printer %s\n", *event, *printerID)
	return nil
}
