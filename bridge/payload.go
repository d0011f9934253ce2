package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/printbridge/printbridge/bridge/jsonwire"
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
	return p.AppendJSON(nil)
}

// AppendJSON appends the payload as a JSON object in key order, or null
// for a nil payload, with the bytes json.Marshal writes for each value.
// The value types listed at [Payload] and []string, float32 and
// json.Number are written here, any other type through json.Marshal. An
// error names the key of the value that failed.
func (p Payload) AppendJSON(dst []byte) ([]byte, error) {
	if p == nil {
		return append(dst, "null"...), nil
	}
	return appendObject(dst, p)
}

func appendObject(dst []byte, p Payload) ([]byte, error) {
	var err error
	dst = append(dst, '{')
	for i, f := range p {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonwire.AppendString(dst, f.Key)
		dst = append(dst, ':')
		if dst, err = appendValue(dst, f.Value); err != nil {
			return dst, fmt.Errorf("key %q: %w", f.Key, err)
		}
	}
	return append(dst, '}'), nil
}

// appendValue writes a nested nil Payload, []any or []string as {} or [],
// not null, as the encoder before AppendJSON did, so that the bytes on the
// bus stay the same.
func appendValue(dst []byte, v any) ([]byte, error) {
	var err error
	switch x := v.(type) {
	case nil:
		dst = append(dst, "null"...)
	case Payload:
		return appendObject(dst, x)
	case []any:
		dst = append(dst, '[')
		for i := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = appendValue(dst, x[i]); err != nil {
				return dst, err
			}
		}
		dst = append(dst, ']')
	case []string:
		dst = append(dst, '[')
		for i := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsonwire.AppendString(dst, x[i])
		}
		dst = append(dst, ']')
	case string:
		dst = jsonwire.AppendString(dst, x)
	case bool:
		dst = strconv.AppendBool(dst, x)
	case int:
		dst = strconv.AppendInt(dst, int64(x), 10)
	case int64:
		dst = strconv.AppendInt(dst, x, 10)
	case uint64:
		dst = strconv.AppendUint(dst, x, 10)
	case float64:
		dst = appendFloat(dst, x)
	case float32:
		dst = appendFloat(dst, float64(x))
	case json.Number:
		return appendNumber(dst, x)
	default:
		return appendMarshaled(dst, x)
	}
	return dst, nil
}

// appendNumber writes n as json.Marshal does: "" as 0, a valid number as
// it is, and json.Marshal's error for anything else.
func appendNumber(dst []byte, n json.Number) ([]byte, error) {
	if n == "" {
		return append(dst, '0'), nil
	}
	if end, ok := scanNumber(n, 0); !ok || end != len(n) {
		return appendMarshaled(dst, n)
	}
	return append(dst, n...), nil
}

func appendMarshaled(dst []byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// FormatFloat formats f for JSON as Python's json.dumps does, because
// OctoPrint is written in Python. That is Python's repr(float): the
// shortest digits that round-trip, plain decimal notation for magnitudes
// in [1e-4, 1e16) such as Unix times (1796423673.2620003), and ".0" on
// integral values so that the number reads back as a float. JSON has no
// NaN or infinity, so those become null.
func FormatFloat(f float64) string {
	return string(appendFloat(nil, f))
}

// appendFloat appends f as [FormatFloat] formats it.
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	return appendFinitePythonFloat(dst, f)
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
