// Package bridge is the bus side of printbridge: the event envelope and
// catalogue, the topic tree, command and reply messages, and the Bus
// interface that the MQTT and NATS adapters implement.
//
// Types here carry no goroutines; they are safe to share once built.
package bridge

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// SchemaVersion is the envelope version written to the schema field.
const SchemaVersion = 1

// Envelope is one event as it travels on the bus.
type Envelope struct {
	Schema  int       `json:"schema"`
	ID      string    `json:"id"`
	Seq     uint64    `json:"seq"`
	Printer string    `json:"printer"`
	Event   string    `json:"event"`
	Time    time.Time `json:"time"`
	Payload Payload   `json:"payload"`
	Context Context   `json:"context"`
}

// Context is the printer state at the time of an event that OctoPrint's
// generic placeholders (__currentZ, __progress, __filename, __filepath,
// __fileorigin) need, because the worker cannot ask the printer later.
type Context struct {
	// CurrentZ is the Z of the last ZChange, nil when unknown.
	CurrentZ *float64 `json:"currentZ"`
	// Progress is the job completion in percent (0-100), nil without a job.
	Progress *float64 `json:"progress"`
	// File is the selected file, nil when none is selected.
	File *FileRef `json:"file"`
	// State is the OctoPrint state id (OPERATIONAL, PRINTING, ...).
	State string `json:"state,omitempty"`
}

// FileRef names a file in a storage, as OctoPrint's job.file does.
type FileRef struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	Origin string `json:"origin"`
}

// MarshalJSON writes CurrentZ and Progress as floats (10.0, not 10).
func (c Context) MarshalJSON() ([]byte, error) {
	return c.AppendJSON(nil), nil
}

// NewEventID returns a UUIDv7: time-ordered, so ids sort by creation, and
// random enough to be unique across edges without coordination.
func NewEventID(now time.Time) string {
	var b [16]byte
	ms := uint64(now.UnixMilli())
	binary.BigEndian.PutUint64(b[0:8], ms<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	b[6] = 0x70 | (b[6] & 0x0f)
	b[8] = 0x80 | (b[8] & 0x3f)
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}

// ValidatePrinterID checks that id can be used as one MQTT topic level and
// one NATS subject token: letters, digits, '-' and '_' only. It rejects
// ReservedPrinterID.
func ValidatePrinterID(id string) error {
	if !isTokenName(id, 64, true) {
		return fmt.Errorf("invalid printer id %q: use 1 to 64 letters, digits, '-' or '_'", id)
	}
	if id == ReservedPrinterID {
		return fmt.Errorf("invalid printer id %q: it is reserved for the bridge topics that all edges share, such as printbridge/bridge/info; choose another id", id)
	}
	return nil
}

// ReservedPrinterID is the topic level of the topics that all edges of a
// base topic share (bridge/info). A printer with this id would publish
// its info to that same topic, so ValidatePrinterID rejects it. Topic
// levels are case-sensitive, so "Bridge" is a valid id.
const ReservedPrinterID = "bridge"

// DecodeEnvelope parses one envelope and checks the fields every consumer
// relies on. The envelopes the edge writes take a fast path (see
// scanEnvelope), and every other input goes through encoding/json, so the
// result and the error message are those of json.Unmarshal either way.
func DecodeEnvelope(data []byte) (*Envelope, error) {
	env, ok := scanEnvelope(data)
	if !ok {
		return decodeEnvelopeJSON(data)
	}
	return requireEventFields(env)
}

// decodeEnvelopeJSON is DecodeEnvelope through encoding/json alone.
func decodeEnvelopeJSON(data []byte) (*Envelope, error) {
	var env Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("invalid event envelope: %w", err)
	}
	return requireEventFields(&env)
}

func requireEventFields(env *Envelope) (*Envelope, error) {
	if env.ID == "" || env.Event == "" || env.Printer == "" {
		return nil, fmt.Errorf("invalid event envelope: id, event and printer are required (got id=%q event=%q printer=%q)",
			env.ID, env.Event, env.Printer)
	}
	return env, nil
}
