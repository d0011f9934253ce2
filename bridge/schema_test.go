package bridge

import (
	"encoding/json"
	"os"
	"testing"
)

func TestEventsDocIsCurrent(t *testing.T) {
	data, err := os.ReadFile("../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != EventsMarkdown() {
		t.Fatal("docs/events.md is stale: run 'go run ./cmd/printbridge events --markdown > docs/events.md'")
	}
}

func TestJSONSchemaCoversCatalogue(t *testing.T) {
	data, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Defs struct {
			Payloads map[string]json.RawMessage `json:"payloads"`
		} `json:"$defs"`
		AllOf []json.RawMessage `json:"allOf"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	for _, d := range Events() {
		if _, ok := schema.Defs.Payloads[d.Name]; !ok {
			t.Errorf("schema has no payload for %s", d.Name)
		}
	}
	if len(schema.AllOf) != len(Events()) {
		t.Errorf("schema has %d event rules, catalogue %d events", len(schema.AllOf), len(Events()))
	}
}

func TestValidatePayload(t *testing.T) {
	cases := []struct {
		event   string
		payload Payload
		wantErr bool
	}{
		{EventZChange, Payload{{Key: "new", Value: 0.2}, {Key: "old", Value: nil}}, false},
		{EventZChange, Payload{{Key: "new", Value: json.Number("0.2")}, {Key: "old", Value: json.Number("0.1")}}, false},
		{EventZChange, Payload{{Key: "new", Value: json.Number("2")}, {Key: "old", Value: nil}}, false},
		{EventZChange, Payload{{Key: "new", Value: "2"}, {Key: "old", Value: nil}}, true},
		{"plugin_x_y#", nil, true},
		{"plugin_a/b_c", nil, true},
		{EventZChange, Payload{{Key: "new", Value: 0.2}}, true},
		{EventZChange, Payload{{Key: "new", Value: 0.2}, {Key: "old", Value: nil}, {Key: "extra", Value: 1}}, true},
		{EventHome, nil, false},
		{EventHome, Payload{{Key: "x", Value: 1}}, true},
		{EventConnected, Payload{{Key: "port", Value: "/dev/ttyACM0"}, {Key: "baudrate", Value: 115200}}, false},
		{EventConnected, Payload{{Key: "port", Value: "/dev/ttyACM0"}, {Key: "baudrate", Value: "fast"}}, true},
		{"plugin_acme_ping", Payload{{Key: "anything", Value: true}}, false},
		{"NoSuchEvent", nil, true},
	}
	for _, c := range cases {
		err := ValidatePayload(c.event, c.payload)
		if (err != nil) != c.wantErr {
			t.Errorf("ValidatePayload(%s, %v) = %v, want error %v", c.event, c.payload, err, c.wantErr)
		}
	}
}
