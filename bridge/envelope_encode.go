package bridge

import (
	"encoding/json"
	"reflect"
	"strconv"
	"time"

	"github.com/printbridge/printbridge/bridge/jsonwire"
)

// AppendJSON appends the envelope as json.Marshal(e) writes it, byte for
// byte, and returns the error json.Marshal would return. It exists because
// json.Marshal validates and compacts the output of every MarshalJSON
// method again, which made it one of the largest costs of each event.
func (e *Envelope) AppendJSON(dst []byte) ([]byte, error) {
	start := len(dst)
	dst = append(dst, `{"schema":`...)
	dst = strconv.AppendInt(dst, int64(e.Schema), 10)
	dst = append(dst, `,"id":`...)
	dst = jsonwire.AppendString(dst, e.ID)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, e.Seq, 10)
	dst = append(dst, `,"printer":`...)
	dst = jsonwire.AppendString(dst, e.Printer)
	dst = append(dst, `,"event":`...)
	dst = jsonwire.AppendString(dst, e.Event)
	dst = append(dst, `,"time":`...)
	dst, err := appendTime(dst, e.Time)
	if err != nil {
		return dst[:start], err
	}
	dst = append(dst, `,"payload":`...)
	if dst, err = e.Payload.AppendJSON(dst); err != nil {
		// json.Marshal wraps the error of a MarshalJSON method this way.
		return dst[:start], &json.MarshalerError{Type: reflect.TypeFor[Payload](), Err: err}
	}
	dst = append(dst, `,"context":`...)
	dst = e.Context.AppendJSON(dst)
	return append(dst, '}'), nil
}

// appendTime writes t as time.Time's MarshalJSON does: RFC 3339 with
// nanoseconds in quotes, and an error for a year outside [0,9999] or a
// zone offset of 24 hours or more.
func appendTime(dst []byte, t time.Time) ([]byte, error) {
	dst = append(dst, '"')
	out, err := t.AppendText(dst)
	if err != nil {
		// AppendText's error starts "Time.AppendText:", so take the one
		// json.Marshal reports from MarshalJSON.
		_, err = t.MarshalJSON()
		return dst, &json.MarshalerError{Type: reflect.TypeFor[time.Time](), Err: err}
	}
	return append(out, '"'), nil
}

// AppendJSON appends the context as [Context.MarshalJSON] writes it.
func (c Context) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"currentZ":`...)
	dst = appendOptionalFloat(dst, c.CurrentZ)
	dst = append(dst, `,"progress":`...)
	dst = appendOptionalFloat(dst, c.Progress)
	dst = append(dst, `,"file":`...)
	if c.File == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, `{"name":`...)
		dst = jsonwire.AppendString(dst, c.File.Name)
		dst = append(dst, `,"path":`...)
		dst = jsonwire.AppendString(dst, c.File.Path)
		dst = append(dst, `,"origin":`...)
		dst = jsonwire.AppendString(dst, c.File.Origin)
		dst = append(dst, '}')
	}
	if c.State != "" {
		dst = append(dst, `,"state":`...)
		dst = jsonwire.AppendString(dst, c.State)
	}
	return append(dst, '}')
}

func appendOptionalFloat(dst []byte, f *float64) []byte {
	if f == nil {
		return append(dst, "null"...)
	}
	return appendFloat(dst, *f)
}
