package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Field is one key of an event payload.
type Field struct {
	Key   string
	Value any
}

// Payload is an event payload that keeps its keys in insertion order, as
// OctoPrint's Python dicts do, so that `{__data}` and `{__json}` render the
// keys in the order OctoPrint would.
//
// Values are nil, bool, string, int, int64, uint64, float64, []any,
// Payload, or json.Number after decoding. Floats are encoded with a decimal
// point or an exponent (10.0, never 10), so that a consumer decoding with
// [Payload.UnmarshalJSON] can still tell a Python float from an int.
type Payload []Field

// Get returns the value stored under key and whether it exists.
func (p Payload) Get(key string) (any, bool) {
	for _, f := range p {
		if f.Key == key {
			return f.Value, true
		}
	}
	return nil, false
}

// Set replaces the value of key, or appends the key when it is missing.
func (p Payload) Set(key string, value any) Payload {
	for i := range p {
		if p[i].Key == key {
			p[i].Value = value
			return p
		}
	}
	return append(p, Field{Key: key, Value: value})
}

// Clone returns a deep copy, so that a payload handed to several consumers
// cannot be changed by one of them behind the others' backs.
func (p Payload) Clone() Payload {
	if p == nil {
		return nil
	}
	out := make(Payload, len(p))
	for i, f := range p {
		out[i] = Field{Key: f.Key, Value: cloneValue(f.Value)}
	}
	return out
}

func cloneValue(v any) any {
	switch x := v.(type) {
	case Payload:
		return x.Clone()
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = cloneValue(x[i])
		}
		return out
	default:
		return v
	}
}

// MarshalJSON encodes the payload as a JSON object in key order.
func (p Payload) MarshalJSON() ([]byte, error) {
	if p == nil {
		return []byte("null"), nil
	}
	var buf bytes.Buffer
	if err := encodeValue(&buf, p); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func encodeValue(buf *bytes.Buffer, v any) error {
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
			if err := encodeValue(buf, f.Value); err != nil {
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
			if err := encodeValue(buf, x[i]); err != nil {
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
		buf.WriteString(FormatFloat(x))
	case float32:
		buf.WriteString(FormatFloat(float64(x)))
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return err
		}
		buf.Write(b)
	}
	return nil
}

// FormatFloat formats f for JSON so that it always reads back as a float:
// shortest round-trip digits with ".0" added to integral values. JSON has
// no NaN or infinity, so those become null.
func FormatFloat(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "null"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !bytes.ContainsAny([]byte(s), ".eE") {
		s += ".0"
	}
	return s
}

// UnmarshalJSON decodes a JSON object, keeping key order. Nested objects
// become Payload values, arrays []any, and numbers json.Number.
func (p *Payload) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return err
	}
	switch x := v.(type) {
	case nil:
		*p = nil
	case Payload:
		*p = x
	default:
		return fmt.Errorf("payload must be a JSON object, not %T", v)
	}
	return nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			obj := Payload{}
			for dec.More() {
				keyTok, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, ok := keyTok.(string)
				if !ok {
					return nil, errors.New("object key is not a string")
				}
				val, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				obj = obj.Set(key, val)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return obj, nil
		case '[':
			arr := []any{}
			for dec.More() {
				val, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				arr = append(arr, val)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return arr, nil
		}
		return nil, fmt.Errorf("unexpected delimiter %q", t)
	default:
		return tok, nil
	}
}
