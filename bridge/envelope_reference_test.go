package bridge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// This file keeps the envelope encoder that the edge used before
// Envelope.AppendJSON: json.Marshal with the MarshalJSON methods below,
// copied unchanged from the old Payload and Context. The codec tests
// compare AppendJSON with it byte for byte.

type referencePayload Payload

func (p referencePayload) MarshalJSON() ([]byte, error) {
	if p == nil {
		return []byte("null"), nil
	}
	var buf bytes.Buffer
	if err := referenceEncodeValue(&buf, Payload(p)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func referenceEncodeValue(buf *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case nil:
		buf.WriteString("null")
	case Payload:
		buf.WriteByte('{')
		for i, f := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			key, _ := json.Marshal(f.Key)
			buf.Write(key)
			buf.WriteByte(':')
			if err := referenceEncodeValue(buf, f.Value); err != nil {
				return fmt.Errorf("key %q: %w", f.Key, err)
			}
		}
		buf.WriteByte('}')
	case []any:
		buf.WriteByte('[')
		for i := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := referenceEncodeValue(buf, x[i]); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case []string:
		buf.WriteByte('[')
		for i := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			s, _ := json.Marshal(x[i])
			buf.Write(s)
		}
		buf.WriteByte(']')
	case float64:
		buf.WriteString(referenceFormatFloat(x))
	case float32:
		buf.WriteString(referenceFormatFloat(float64(x)))
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return err
		}
		buf.Write(b)
	}
	return nil
}

func referenceFormatFloat(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "null"
	}
	return referenceFloatRepr(f)
}

type referenceContext Context

func (c referenceContext) MarshalJSON() ([]byte, error) {
	type plain struct {
		CurrentZ json.RawMessage `json:"currentZ"`
		Progress json.RawMessage `json:"progress"`
		File     *FileRef        `json:"file"`
		State    string          `json:"state,omitempty"`
	}
	out := plain{CurrentZ: json.RawMessage("null"), Progress: json.RawMessage("null"), File: c.File, State: c.State}
	if c.CurrentZ != nil {
		out.CurrentZ = json.RawMessage(referenceFormatFloat(*c.CurrentZ))
	}
	if c.Progress != nil {
		out.Progress = json.RawMessage(referenceFormatFloat(*c.Progress))
	}
	return json.Marshal(out)
}

type referenceEnvelope struct {
	Schema  int              `json:"schema"`
	ID      string           `json:"id"`
	Seq     uint64           `json:"seq"`
	Printer string           `json:"printer"`
	Event   string           `json:"event"`
	Time    time.Time        `json:"time"`
	Payload referencePayload `json:"payload"`
	Context referenceContext `json:"context"`
}

// referenceMarshal encodes env as json.Marshal(env) did before
// AppendJSON. Its errors name the type bridge.Payload, as the old ones
// did, in place of this file's referencePayload.
func referenceMarshal(env *Envelope) ([]byte, error) {
	data, err := json.Marshal(referenceEnvelope{
		Schema: env.Schema, ID: env.ID, Seq: env.Seq, Printer: env.Printer, Event: env.Event, Time: env.Time,
		Payload: referencePayload(env.Payload), Context: referenceContext(env.Context),
	})
	if err != nil {
		return nil, fmt.Errorf("%s", strings.ReplaceAll(err.Error(), "bridge.referencePayload", "bridge.Payload"))
	}
	return data, nil
}
