package bridge

import (
	"encoding/json"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// maxScanDepth is the payload nesting that scanEnvelope decodes itself.
// Deeper input goes to encoding/json, whose own limit is 10000, so the
// scanner's recursion stays short.
const maxScanDepth = 64

// Bits of envelopeScanner.seen. A repeated key, here and in the context
// and file objects, sends the input to encoding/json, because
// json.Unmarshal decodes a repeated object into the struct it already
// filled, merging the two, and the scanner does not copy that.
const (
	seenSchema = 1 << iota
	seenID
	seenSeq
	seenPrinter
	seenEvent
	seenTime
	seenPayload
	seenContext
)

// scanEnvelope decodes the form that Envelope.AppendJSON writes into the
// Envelope that json.Unmarshal builds, with JSON whitespace anywhere and
// the keys of Envelope, Context and FileRef in any order. It returns false
// for every input it does not handle, and DecodeEnvelope then hands that
// input to encoding/json. Such input has keys other than the field names
// (encoding/json matches keys case-insensitively), escaped or repeated
// keys in those structs, invalid UTF-8, null where the edge never writes
// it, a number that does not fit its field, a time that time.Time
// rejects, invalid JSON, or a payload nested deeper than maxScanDepth.
func scanEnvelope(data []byte) (*Envelope, bool) {
	s := envelopeScanner{data: data}
	env := new(Envelope)
	ok := s.object(func(key []byte) bool { return s.envelopeField(env, key) })
	if !ok {
		return nil, false
	}
	s.skipSpace()
	return env, s.pos == len(s.data)
}

type envelopeScanner struct {
	data []byte
	pos  int
	// seen has a seen* bit for each top-level key decoded so far.
	seen uint8
}

func (s *envelopeScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// consume skips whitespace and then c, and reports whether c was there.
func (s *envelopeScanner) consume(c byte) bool {
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// peek skips whitespace and returns the next byte, or 0 at the end.
func (s *envelopeScanner) peek() byte {
	s.skipSpace()
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

// object reads an object of a struct type, calling field after each key's
// colon to decode the value.
func (s *envelopeScanner) object(field func(key []byte) bool) bool {
	if !s.consume('{') {
		return false
	}
	if s.consume('}') {
		return true
	}
	for {
		key, ok := s.plainKey()
		if !ok || !s.consume(':') || !field(key) {
			return false
		}
		if s.consume(',') {
			continue
		}
		return s.consume('}')
	}
}

// plainKey reads a key of printable ASCII without escapes, which is all a
// struct field name of Envelope, Context or FileRef can match exactly.
func (s *envelopeScanner) plainKey() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	for i := s.pos; i < len(s.data); i++ {
		switch c := s.data[i]; {
		case c == '"':
			key := s.data[s.pos:i]
			s.pos = i + 1
			return key, true
		case c == '\\' || c < ' ' || c >= utf8.RuneSelf:
			return nil, false
		}
	}
	return nil, false
}

// markSeen sets bit in *seen and reports whether it was still clear.
func markSeen(seen *uint8, bit uint8) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

func (s *envelopeScanner) envelopeField(env *Envelope, key []byte) bool {
	var ok bool
	switch string(key) {
	case "schema":
		if !markSeen(&s.seen, seenSchema) {
			return false
		}
		var n int64
		n, ok = s.integer()
		env.Schema = int(n)
	case "id":
		if !markSeen(&s.seen, seenID) {
			return false
		}
		env.ID, ok = s.stringValue()
	case "seq":
		if !markSeen(&s.seen, seenSeq) {
			return false
		}
		env.Seq, ok = s.unsigned()
	case "printer":
		if !markSeen(&s.seen, seenPrinter) {
			return false
		}
		env.Printer, ok = s.stringValue()
	case "event":
		if !markSeen(&s.seen, seenEvent) {
			return false
		}
		env.Event, ok = s.stringValue()
	case "time":
		if !markSeen(&s.seen, seenTime) {
			return false
		}
		ok = s.timestamp(env)
	case "payload":
		if !markSeen(&s.seen, seenPayload) {
			return false
		}
		ok = s.payload(env)
	case "context":
		if !markSeen(&s.seen, seenContext) {
			return false
		}
		ok = s.context(&env.Context)
	}
	return ok
}

// integer reads a number that json.Unmarshal stores in an int.
func (s *envelopeScanner) integer() (int64, bool) {
	lit, ok := s.number()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(lit), 10, strconv.IntSize)
	return n, err == nil
}

// unsigned reads a number that json.Unmarshal stores in a uint64.
func (s *envelopeScanner) unsigned() (uint64, bool) {
	lit, ok := s.number()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(string(lit), 10, 64)
	return n, err == nil
}

// timestamp hands the string literal to time.Time's UnmarshalJSON, as
// json.Unmarshal does, escapes and all.
func (s *envelopeScanner) timestamp(env *Envelope) bool {
	if s.peek() != '"' {
		return false
	}
	start := s.pos
	if _, ok := s.stringValue(); !ok {
		return false
	}
	return env.Time.UnmarshalJSON(s.data[start:s.pos]) == nil
}

func (s *envelopeScanner) payload(env *Envelope) bool {
	switch s.peek() {
	case 'n':
		env.Payload = nil
		return s.literal("null")
	case '{':
		p, ok := s.payloadObject(1)
		env.Payload = p
		return ok
	}
	return false
}

func (s *envelopeScanner) context(ctx *Context) bool {
	var seen uint8
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "currentZ":
			ok = markSeen(&seen, 1<<0)
			if ok {
				ctx.CurrentZ, ok = s.optionalFloat()
			}
		case "progress":
			ok = markSeen(&seen, 1<<1)
			if ok {
				ctx.Progress, ok = s.optionalFloat()
			}
		case "file":
			ok = markSeen(&seen, 1<<2)
			if ok {
				ctx.File, ok = s.fileRef()
			}
		case "state":
			ok = markSeen(&seen, 1<<3)
			if ok {
				ctx.State, ok = s.stringValue()
			}
		}
		return ok
	})
}

// optionalFloat reads null as nil and a number as json.Unmarshal parses
// it into a float64.
func (s *envelopeScanner) optionalFloat() (*float64, bool) {
	if s.peek() == 'n' {
		return nil, s.literal("null")
	}
	lit, ok := s.number()
	if !ok {
		return nil, false
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return nil, false
	}
	return &f, true
}

func (s *envelopeScanner) fileRef() (*FileRef, bool) {
	if s.peek() == 'n' {
		return nil, s.literal("null")
	}
	file := new(FileRef)
	var seen uint8
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "name":
			if ok = markSeen(&seen, 1<<0); ok {
				file.Name, ok = s.stringValue()
			}
		case "path":
			if ok = markSeen(&seen, 1<<1); ok {
				file.Path, ok = s.stringValue()
			}
		case "origin":
			if ok = markSeen(&seen, 1<<2); ok {
				file.Origin, ok = s.stringValue()
			}
		}
		return ok
	})
	return file, ok
}

// value reads any JSON value as Payload.UnmarshalJSON decodes it: objects
// as Payload, arrays as []any, numbers as json.Number.
func (s *envelopeScanner) value(depth int) (any, bool) {
	switch c := s.peek(); {
	case c == '{':
		return s.payloadObject(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		return s.stringValue()
	case c == 't':
		return true, s.literal("true")
	case c == 'f':
		return false, s.literal("false")
	case c == 'n':
		return nil, s.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		lit, ok := s.number()
		return json.Number(lit), ok
	}
	return nil, false
}

// payloadObject reads an object whose '{' is next. A repeated key
// replaces the earlier value in place, as Payload.Set does.
func (s *envelopeScanner) payloadObject(depth int) (Payload, bool) {
	if depth > maxScanDepth {
		return nil, false
	}
	s.pos++
	obj := Payload{}
	if s.consume('}') {
		return obj, true
	}
	for {
		if s.peek() != '"' {
			return nil, false
		}
		key, ok := s.stringValue()
		if !ok || !s.consume(':') {
			return nil, false
		}
		val, ok := s.value(depth)
		if !ok {
			return nil, false
		}
		obj = obj.Set(key, val)
		if s.consume(',') {
			continue
		}
		return obj, s.consume('}')
	}
}

// array reads an array whose '[' is next.
func (s *envelopeScanner) array(depth int) ([]any, bool) {
	if depth > maxScanDepth {
		return nil, false
	}
	s.pos++
	arr := []any{}
	if s.consume(']') {
		return arr, true
	}
	for {
		val, ok := s.value(depth)
		if !ok {
			return nil, false
		}
		arr = append(arr, val)
		if s.consume(',') {
			continue
		}
		return arr, s.consume(']')
	}
}

// literal reads word (true, false or null), whose first byte is next.
func (s *envelopeScanner) literal(word string) bool {
	if len(s.data)-s.pos < len(word) || string(s.data[s.pos:s.pos+len(word)]) != word {
		return false
	}
	s.pos += len(word)
	return true
}

// number reads a number literal as JSON's grammar defines it.
func (s *envelopeScanner) number() ([]byte, bool) {
	s.skipSpace()
	end, ok := scanNumber(s.data, s.pos)
	if !ok {
		return nil, false
	}
	lit := s.data[s.pos:end]
	s.pos = end
	return lit, true
}

// scanNumber returns the end of the number literal that starts at b[i]:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber[T ~[]byte | ~string](b T, i int) (int, bool) {
	digits := func() bool {
		start := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > start
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return i, false
		}
	}
	return i, true
}

// stringValue reads a string literal, which must be next after
// whitespace. The common case without escapes is one copy of the bytes.
func (s *envelopeScanner) stringValue() (string, bool) {
	if !s.consume('"') {
		return "", false
	}
	for i := s.pos; i < len(s.data); {
		c := s.data[i]
		switch {
		case c == '"':
			str := string(s.data[s.pos:i])
			s.pos = i + 1
			return str, true
		case c == '\\':
			return s.unescape(i)
		case c < ' ':
			return "", false
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(s.data[i:])
			if r == utf8.RuneError && size == 1 {
				return "", false
			}
			i += size
		}
	}
	return "", false
}

// unescape finishes a string literal that starts at s.pos and has its
// first backslash at i. Escapes decode as encoding/json decodes them: a
// \u escape of a UTF-16 surrogate that does not pair with the next \u
// escape becomes U+FFFD, and that next escape is decoded on its own.
func (s *envelopeScanner) unescape(i int) (string, bool) {
	buf := make([]byte, 0, i-s.pos+16)
	buf = append(buf, s.data[s.pos:i]...)
	for i < len(s.data) {
		c := s.data[i]
		switch {
		case c == '"':
			s.pos = i + 1
			return string(buf), true
		case c == '\\':
			if i+1 >= len(s.data) {
				return "", false
			}
			switch e := s.data[i+1]; e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r := utf16Escape(s.data, i)
				if r < 0 {
					return "", false
				}
				i += 6
				if utf16.IsSurrogate(r) {
					r = utf16.DecodeRune(r, utf16Escape(s.data, i))
					if r != unicode.ReplacementChar {
						i += 6
					}
				}
				buf = utf8.AppendRune(buf, r)
				continue
			default:
				return "", false
			}
			i += 2
		case c < ' ':
			return "", false
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			i++
		default:
			r, size := utf8.DecodeRune(s.data[i:])
			if r == utf8.RuneError && size == 1 {
				return "", false
			}
			buf = append(buf, s.data[i:i+size]...)
			i += size
		}
	}
	return "", false
}

// utf16Escape returns the code unit of the \uXXXX escape at b[i], or -1
// when there is none.
func utf16Escape(b []byte, i int) rune {
	if len(b)-i < 6 || b[i] != '\\' || b[i+1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range b[i+2 : i+6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
