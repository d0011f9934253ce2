package jsonwire

import (
	"encoding/json"
	"math"
	"testing"
)

func checkString(t *testing.T, s string) {
	t.Helper()
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("json.Marshal(%q): %v", s, err)
	}
	if got := AppendString([]byte("x"), s); string(got) != "x"+string(want) {
		t.Fatalf("AppendString(%q) = %s, json.Marshal = %s", s, got[1:], want)
	}
}

func TestAppendStringMatchesMarshal(t *testing.T) {
	for _, s := range []string{
		"", "plain ASCII", `"quoted" \back\slash/`, "<script>&amp;</script>",
		"\x00\x01\x07\b\t\n\x0b\f\r\x0e\x1f\x20\x7f",
		"\u2028 line \u2029 paragraph \u2027\u202a",
		"é 温度 🌡️ \U0010ffff", "\ufffd",
		"\xff", "a\xc3", "\xc3\x28", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x80", "\xe2\x80\xa8\xe2",
	} {
		checkString(t, s)
	}
}

func checkFloat(t *testing.T, f float64) {
	t.Helper()
	want, wantErr := json.Marshal(f)
	got, err := AppendFloat([]byte("x"), f)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("AppendFloat(%v) error = %v, json.Marshal error = %v", f, err, wantErr)
	}
	if err != nil {
		if err.Error() != wantErr.Error() {
			t.Fatalf("AppendFloat(%v) error = %q, json.Marshal error = %q", f, err, wantErr)
		}
		return
	}
	if string(got) != "x"+string(want) {
		t.Fatalf("AppendFloat(%v) = %s, json.Marshal = %s", f, got[1:], want)
	}
}

func TestAppendFloatMatchesMarshal(t *testing.T) {
	for _, f := range []float64{
		0, math.Copysign(0, -1), 1, -1, 0.1, 1.5, 10, 1e20, 1e21, 123456789e13, 1e-6, 9.99999e-7, 1e-7, 1.5e-9,
		-1e-7, -1e21, 5e-324, math.MaxFloat64, math.SmallestNonzeroFloat64, 1e100, 1e-100,
		math.NaN(), math.Inf(1), math.Inf(-1),
	} {
		checkFloat(t, f)
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("<&>\u2028\u2029\x00\xff")
	f.Fuzz(checkString)
}

func FuzzAppendFloat(f *testing.F) {
	f.Add(1e-7)
	f.Add(1e21)
	f.Fuzz(checkFloat)
}
