package hooks

import (
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/printbridge/printbridge/bridge"
)

// The expected values in this file were printed once by CPython 3.11.7
// for each case below, with str.format, str(), repr(), ascii(), json.dumps,
// shlex.quote and shlex.split. They are hard-coded, so these tests need no
// Python; TestFormatMatchesCPython compares with a local Python as well.

// formatParams are the values of formatCases; they are already strings,
// as OctoPrint 1.11.3+ converts every value with str() before rendering.
var formatParams = map[string]string{
	"name": "benchy.gcode", "time": "1234.5678901", "position": "{'x': 10.0, 'y': None}",
	"progress": "42", "a": "a;b", "w": "8", "e": "", "u": "héllo", "q": "it's",
}

// formatCases: template, expected output, or Python's exception class and
// message (for KeyError the missing name).
var formatCases = []struct {
	template, want, class, message string
}{
	{"{name}", "benchy.gcode", "", ""},
	{"print {name} done", "print benchy.gcode done", "", ""},
	{"{{", "{", "", ""},
	{"}}", "}", "", ""},
	{"{{name}}", "{name}", "", ""},
	{"{{{name}}}", "{benchy.gcode}", "", ""},
	{"{unknown}", "", "KeyError", "unknown"},
	{"{file} {name}", "", "KeyError", "file"},
	{"{}", "", "IndexError", "Replacement index 0 out of range for positional args tuple"},
	{"{0}", "", "IndexError", "Replacement index 0 out of range for positional args tuple"},
	{"{1}", "", "IndexError", "Replacement index 1 out of range for positional args tuple"},
	{"{name", "", "ValueError", "expected '}' before end of string"},
	{"name}", "", "ValueError", "Single '}' encountered in format string"},
	{"{name}}", "", "ValueError", "Single '}' encountered in format string"},
	{"awk '{print $1}'", "", "KeyError", "print $1"},
	{"{\"a\": 1}", "", "KeyError", "\"a\""},
	{"{position[x]}", "", "TypeError", "string indices must be integers, not 'str'"},
	{"{position.x}", "", "AttributeError", "attribute access .x is not supported: placeholder values are strings"},
	{"{progress[0]}", "4", "", ""},
	{"{progress[1]}", "2", "", ""},
	{"{progress[2]}", "", "IndexError", "string index out of range"},
	{"{time:.1f}", "", "ValueError", "Unknown format code 'f' for object of type 'str'"},
	{"{progress:d}", "", "ValueError", "Unknown format code 'd' for object of type 'str'"},
	{"{name:>15}", "   benchy.gcode", "", ""},
	{"{name:.3}", "ben", "", ""},
	{"{name:*^16}", "**benchy.gcode**", "", ""},
	{"{name!r}", "'benchy.gcode'", "", ""},
	{"{name!s}", "benchy.gcode", "", ""},
	{"{u!a}", "'h\\xe9llo'", "", ""},
	{"{q!r}", "\"it's\"", "", ""},
	{"{name!x}", "", "ValueError", "Unknown conversion specifier x"},
	{"{name!}", "", "ValueError", "unmatched '{' in format spec"},
	{"{name!r", "", "ValueError", "unmatched '{' in format spec"},
	{"{name!rx}", "", "ValueError", "expected ':' after conversion specifier"},
	{"{name:{w}}", "benchy.gcode", "", ""},
	{"{name:>{w}.{w}}", "benchy.g", "", ""},
	{"{name:{w:{w}}}", "", "ValueError", "Max string recursion exceeded"},
	{"{name:+}", "", "ValueError", "Sign not allowed in string format specifier"},
	{"{name: }", "", "ValueError", "Space not allowed in string format specifier"},
	{"{name:#}", "", "ValueError", "Alternate form (#) not allowed in string format specifier"},
	{"{name:=10}", "", "ValueError", "'=' alignment not allowed in string format specifier"},
	{"{name:,}", "", "ValueError", "Cannot specify ',' with 's'."},
	{"{name:_}", "", "ValueError", "Cannot specify '_' with 's'."},
	{"{name:z}", "", "ValueError", "Negative zero coercion (z) not allowed in string format specifier"},
	{"{name:.}", "", "ValueError", "Format specifier missing precision"},
	{"{name:10x}", "", "ValueError", "Unknown format code 'x' for object of type 'str'"},
	{"{name:010}", "benchy.gcode", "", ""},
	{"{name[]}", "", "ValueError", "Empty attribute in format string"},
	{"{name.}", "", "ValueError", "Empty attribute in format string"},
	{"{name[0]x}", "", "ValueError", "Only '.' or '[' may follow ']' in format field specifier"},
	{"{name[-1]}", "", "TypeError", "string indices must be integers, not 'str'"},
	{"{name[a]}", "", "TypeError", "string indices must be integers, not 'str'"},
	{"{ name}", "", "KeyError", " name"},
	{"{Script Location}", "", "KeyError", "Script Location"},
	{"{e}", "", "", ""},
	{"[{e:3}]", "[   ]", "", ""},
	{"{u:.2}", "hé", "", ""},
	{"{u:^7}", " héllo ", "", ""},
	{"{name[99999999999999999999]}", "", "ValueError", "Too many decimal digits in format string"},
	{"{99999999999999999999}", "", "ValueError", "Too many decimal digits in format string"},
	{"{name:99999999999999999999}", "", "ValueError", "Too many decimal digits in format string"},
	{"{a{b}", "", "ValueError", "unexpected '{' in field name"},
	{"x{name:{", "", "ValueError", "unmatched '{' in format spec"},
	{"{[0]}", "", "IndexError", "Replacement index 0 out of range for positional args tuple"},
	{"{!r}", "", "IndexError", "Replacement index 0 out of range for positional args tuple"},
	{"{name:}", "benchy.gcode", "", ""},
	{"{name!r:>16}", "  'benchy.gcode'", "", ""},
	{"{unknown!r}", "", "KeyError", "unknown"},
	{"{unknown} {0}", "", "KeyError", "unknown"},
	{"{0} {unknown}", "", "IndexError", "Replacement index 0 out of range for positional args tuple"},
	{"} {unknown}", "", "ValueError", "Single '}' encountered in format string"},
	{"{unknown} }", "", "KeyError", "unknown"},
	// Python renders the repr of a bound str method here; printbridge
	// rejects every attribute access.
	{"{name.upper}", "", "AttributeError", "attribute access .upper is not supported: placeholder values are strings"},
}

func TestFormatPythonVectors(t *testing.T) {
	for _, c := range formatCases {
		got, err := Format(c.template, formatParams)
		if c.class == "" {
			if err != nil {
				t.Errorf("Format(%q) failed: %v; want %q", c.template, err, c.want)
			} else if got != c.want {
				t.Errorf("Format(%q) = %q, want %q", c.template, got, c.want)
			}
			continue
		}
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Errorf("Format(%q) = %q, %v; want %s: %s", c.template, got, err, c.class, c.message)
			continue
		}
		if fe.Class != c.class {
			t.Errorf("Format(%q) raised %s, want %s", c.template, fe.Class, c.class)
		}
		if fe.Message != c.message {
			t.Errorf("Format(%q) message %q, want %q", c.template, fe.Message, c.message)
		}
		if fe.UnknownPlaceholder() != (c.class == "KeyError") {
			t.Errorf("Format(%q).UnknownPlaceholder() = %v", c.template, fe.UnknownPlaceholder())
		}
	}
}

func TestCheckTemplateIgnoresValues(t *testing.T) {
	names, err := checkTemplate("{name} {missing[5]} {w:>{width}} {name!r:.3}")
	if err != nil {
		t.Fatalf("checkTemplate: %v", err)
	}
	want := []string{"name", "missing", "w", "width", "name"}
	if len(names) != len(want) {
		t.Fatalf("names = %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Errorf("names[%d] = %q, want %q", i, names[i], want[i])
		}
	}
	for _, bad := range []string{"{}", "{time:.1f}", "{position[x]}", "{a", "}", "{a.b}", "{a!z}"} {
		if _, err := checkTemplate(bad); err == nil {
			t.Errorf("checkTemplate(%q) accepted a template that can never render", bad)
		}
	}
}

// valueCases: a JSON value, Python's str() of it after json.loads, and
// json.dumps({"k": value}).
var valueCases = []struct {
	json, str, dumps string
}{
	{"true", "True", "{\"k\": true}"},
	{"false", "False", "{\"k\": false}"},
	{"null", "None", "{\"k\": null}"},
	{"42", "42", "{\"k\": 42}"},
	{"-0", "0", "{\"k\": 0}"},
	{"123456789012345678901234567890", "123456789012345678901234567890", "{\"k\": 123456789012345678901234567890}"},
	{"10.0", "10.0", "{\"k\": 10.0}"},
	{"10", "10", "{\"k\": 10}"},
	{"1e-05", "1e-05", "{\"k\": 1e-05}"},
	{"0.00001", "1e-05", "{\"k\": 1e-05}"},
	{"1e16", "1e+16", "{\"k\": 1e+16}"},
	{"1E16", "1e+16", "{\"k\": 1e+16}"},
	{"0.0001", "0.0001", "{\"k\": 0.0001}"},
	{"1234567890123456.0", "1234567890123456.0", "{\"k\": 1234567890123456.0}"},
	{"12345678901234567.0", "1.2345678901234568e+16", "{\"k\": 1.2345678901234568e+16}"},
	{"-0.0", "-0.0", "{\"k\": -0.0}"},
	{"0.1", "0.1", "{\"k\": 0.1}"},
	{"1.5e300", "1.5e+300", "{\"k\": 1.5e+300}"},
	{"1e400", "inf", "{\"k\": Infinity}"},
	{"-1e400", "-inf", "{\"k\": -Infinity}"},
	{"2.5", "2.5", "{\"k\": 2.5}"},
	{"\"benchy.gcode\"", "benchy.gcode", "{\"k\": \"benchy.gcode\"}"},
	{"\"it's\"", "it's", "{\"k\": \"it's\"}"},
	{"\"say \\\"hi\\\"\"", "say \"hi\"", "{\"k\": \"say \\\"hi\\\"\"}"},
	{"\"both ' and \\\"\"", "both ' and \"", "{\"k\": \"both ' and \\\"\"}"},
	{"\"tab\\tnew\\nline\\r\"", "tab\tnew\nline\r", "{\"k\": \"tab\\tnew\\nline\\r\"}"},
	{"\"\\u0000\\u001f\\u007f\"", "\u0000\u001f\u007f", "{\"k\": \"\\u0000\\u001f\\u007f\"}"},
	{"\"é中😀\"", "é中😀", "{\"k\": \"\\u00e9\\u4e2d\\ud83d\\ude00\"}"},
	{"\"\\u00a0\\u200b\\u2028\"", "\u00a0\u200b\u2028", "{\"k\": \"\\u00a0\\u200b\\u2028\"}"},
	{"\"back\\\\slash\"", "back\\slash", "{\"k\": \"back\\\\slash\"}"},
	{"{}", "{}", "{\"k\": {}}"},
	{"[]", "[]", "{\"k\": []}"},
	{"{\"k\": \"v\", \"n\": 1.5, \"b\": true, \"x\": null}", "{'k': 'v', 'n': 1.5, 'b': True, 'x': None}", "{\"k\": {\"k\": \"v\", \"n\": 1.5, \"b\": true, \"x\": null}}"},
	{"[\"a\", 1]", "['a', 1]", "{\"k\": [\"a\", 1]}"},
	{"{\"x\": 10.0, \"y\": 20.5, \"z\": 0.2, \"e\": null, \"t\": 0, \"f\": 3000}", "{'x': 10.0, 'y': 20.5, 'z': 0.2, 'e': None, 't': 0, 'f': 3000}", "{\"k\": {\"x\": 10.0, \"y\": 20.5, \"z\": 0.2, \"e\": null, \"t\": 0, \"f\": 3000}}"},
	{"{\"nested\": {\"list\": [1, 2.0, \"three\", [], {}]}}", "{'nested': {'list': [1, 2.0, 'three', [], {}]}}", "{\"k\": {\"nested\": {\"list\": [1, 2.0, \"three\", [], {}]}}}"},
	{"{\"é\": \"ü\"}", "{'é': 'ü'}", "{\"k\": {\"\\u00e9\": \"\\u00fc\"}}"},
}

func TestPythonStrOfJSONValues(t *testing.T) {
	for _, c := range valueCases {
		var p bridge.Payload
		if err := json.Unmarshal([]byte(`{"k": `+c.json+`}`), &p); err != nil {
			t.Fatalf("decode %s: %v", c.json, err)
		}
		v, _ := p.Get("k")
		if got := pythonStr(v); got != c.str {
			t.Errorf("str(%s) = %q, want %q", c.json, got, c.str)
		}
		got, err := pythonJSON(p)
		if err != nil {
			t.Errorf("json.dumps of %s failed: %v", c.json, err)
		} else if got != c.dumps {
			t.Errorf("json.dumps of %s = %q, want %q", c.json, got, c.dumps)
		}
	}
}

func TestPythonReprOfGoFloats(t *testing.T) {
	cases := []struct {
		in   float64
		want string
	}{
		{10, "10.0"}, {1e-5, "1e-05"}, {1e16, "1e+16"}, {0.0001, "0.0001"}, {1234567890123456, "1234567890123456.0"},
		{0.2, "0.2"}, {1234.5678901, "1234.5678901"}, {5e-324, "5e-324"}, {1.7976931348623157e308, "1.7976931348623157e+308"},
	}
	for _, c := range cases {
		if got := pythonStr(c.in); got != c.want {
			t.Errorf("str(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

// reprCases: a string, Python's repr() and ascii() of it.
var reprCases = []struct {
	in, repr, ascii string
}{
	{"benchy", "'benchy'", "'benchy'"},
	{"it's", "\"it's\"", "\"it's\""},
	{"say \"hi\"", "'say \"hi\"'", "'say \"hi\"'"},
	{"both ' and \"", "'both \\' and \"'", "'both \\' and \"'"},
	{"tab\tnl\ncr\r", "'tab\\tnl\\ncr\\r'", "'tab\\tnl\\ncr\\r'"},
	{"\u0000\u001f\u007f\u0080\u009f", "'\\x00\\x1f\\x7f\\x80\\x9f'", "'\\x00\\x1f\\x7f\\x80\\x9f'"},
	{"\u00a0\u00ad\u200b\u2028\ufeff", "'\\xa0\\xad\\u200b\\u2028\\ufeff'", "'\\xa0\\xad\\u200b\\u2028\\ufeff'"},
	{"é中😀", "'é中😀'", "'\\xe9\\u4e2d\\U0001f600'"},
	{"\U000e0001\U0010ffff", "'\\U000e0001\\U0010ffff'", "'\\U000e0001\\U0010ffff'"},
	{"back\\slash", "'back\\\\slash'", "'back\\\\slash'"},
	{"", "''", "''"},
}

func TestPythonReprOfStrings(t *testing.T) {
	for _, c := range reprCases {
		if got := pyReprString(c.in); got != c.repr {
			t.Errorf("repr(%q) = %q, want %q", c.in, got, c.repr)
		}
		if got := pyASCII(pyReprString(c.in)); got != c.ascii {
			t.Errorf("ascii(%q) = %q, want %q", c.in, got, c.ascii)
		}
	}
}

var quoteCases = []struct {
	in, want string
}{
	{"", "''"},
	{"a", "a"},
	{"a;b", "'a;b'"},
	{"test.gcode;rm -rf /;#.gcode", "'test.gcode;rm -rf /;#.gcode'"},
	{"my part.gcode", "'my part.gcode'"},
	{"it's", "'it'\"'\"'s'"},
	{"abcXYZ019_@%+=:,./-", "abcXYZ019_@%+=:,./-"},
	{"é", "'é'"},
	{"$(id)", "'$(id)'"},
	{"`id`", "'`id`'"},
	{"-rf", "-rf"},
	{"a\nb", "'a\nb'"},
	{"~", "'~'"},
}

func TestQuotePythonVectors(t *testing.T) {
	for _, c := range quoteCases {
		if got := Quote(c.in); got != c.want {
			t.Errorf("Quote(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

var splitCases = []struct {
	in   string
	want []string
	err  string
}{
	{"notify \"Print {name} done\"", []string{"notify", "Print {name} done"}, ""},
	{"a 'b c' d", []string{"a", "b c", "d"}, ""},
	{"a \"b\\\"c\" d", []string{"a", "b\"c", "d"}, ""},
	{"a\\ b", []string{"a b"}, ""},
	{"''", []string{""}, ""},
	{"a \"\" b", []string{"a", "", "b"}, ""},
	{"x'y'z", []string{"xyz"}, ""},
	{"\"a\\b\"", []string{"a\\b"}, ""},
	{"a\\\nb", []string{"a\nb"}, ""},
	{"  lead  trail  ", []string{"lead", "trail"}, ""},
	{"a#b #c", []string{"a#b", "#c"}, ""},
	{"{a:>10}", []string{"{a:>10}"}, ""},
	{"'unterminated", nil, "No closing quotation"},
	{"\"unterminated", nil, "No closing quotation"},
	{"end\\", nil, "No escaped character"},
}

func TestSplitPythonVectors(t *testing.T) {
	for _, c := range splitCases {
		got, err := Split(c.in)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("Split(%q) = %q, %v; want error %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Split(%q) failed: %v", c.in, err)
			continue
		}
		if len(got) != len(c.want) {
			t.Errorf("Split(%q) = %q, want %q", c.in, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("Split(%q)[%d] = %q, want %q", c.in, i, got[i], c.want[i])
			}
		}
	}
}

func FuzzFormat(f *testing.F) {
	for _, c := range formatCases {
		f.Add(c.template)
	}
	f.Fuzz(func(t *testing.T, template string) {
		_, err := Format(template, formatParams)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("Format(%q) returned %T, want *FormatError", template, err)
			}
		}
		// A template that renders with real values passes the load-time
		// check, which must never reject more than rendering does.
		if err == nil {
			if _, cerr := checkTemplate(template); cerr != nil {
				t.Fatalf("checkTemplate(%q) = %v, but Format succeeded", template, cerr)
			}
		}
	})
}

func FuzzSplit(f *testing.F) {
	for _, c := range splitCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		words, err := Split(s)
		if err != nil {
			return
		}
		// Quoting each word and splitting again must give the words back.
		var joined string
		for i, w := range words {
			if i > 0 {
				joined += " "
			}
			joined += Quote(w)
		}
		again, err := Split(joined)
		if err != nil || len(again) != len(words) {
			t.Fatalf("Split(Quote...) of %q = %q, %v", words, again, err)
		}
		for i := range words {
			if again[i] != words[i] {
				t.Fatalf("round trip of %q gave %q", words[i], again[i])
			}
		}
	})
}
