package printer

import "testing"

func TestParseFileListLine(t *testing.T) {
	cases := []struct {
		line string
		want SDFile
	}{
		{"TEST-D~1.GCO", SDFile{Name: "TEST-D~1.GCO", Size: -1}},
		{"/47ACB~1.MOD/TEST/TEST-D~1.GCO", SDFile{Name: "/47ACB~1.MOD/TEST/TEST-D~1.GCO", Size: -1}},
		{"CUBE~1.GCO 12345", SDFile{Name: "CUBE~1.GCO", Size: 12345}},
		{"CUBE~1.GCO 12345 0x5A2C6B3F", SDFile{Name: "CUBE~1.GCO", Size: 12345, Timestamp: 0x5A2C6B3F}},
		{"CUBE~1.GCO 12345 my cube.gcode", SDFile{Name: "CUBE~1.GCO", Size: 12345, LongName: "my cube.gcode"}},
		{`CUBE~1.GCO 12345 0x5A2C6B3F "my cube.gcode"`, SDFile{Name: "CUBE~1.GCO", Size: 12345, Timestamp: 0x5A2C6B3F, LongName: "my cube.gcode"}},
		{"odd name.gco big", SDFile{Name: "odd name.gco big", Size: -1}},
	}
	for _, c := range cases {
		got, ok := ParseFileListLine(c.line)
		if !ok || got != c.want {
			t.Errorf("ParseFileListLine(%q) = %+v, %v; want %+v", c.line, got, ok, c.want)
		}
	}
	if _, ok := ParseFileListLine("  "); ok {
		t.Error("blank line accepted")
	}
}

func TestParseSDStatus(t *testing.T) {
	cases := []struct {
		line               string
		pos, total         int64
		printing, accepted bool
	}{
		{"SD printing byte 123/456", 123, 456, true, true},
		{"SD printing byte 0/0", 0, 0, false, true},
		{"Not SD printing", 0, 0, false, true},
		{"ok", 0, 0, false, false},
	}
	for _, c := range cases {
		pos, total, printing, ok := ParseSDStatus(c.line)
		if pos != c.pos || total != c.total || printing != c.printing || ok != c.accepted {
			t.Errorf("ParseSDStatus(%q) = %d %d %v %v", c.line, pos, total, printing, ok)
		}
	}
}

func TestParseFileOpened(t *testing.T) {
	name, size, ok := ParseFileOpened("File opened: file.tx Size: 17")
	if !ok || name != "file.tx" || size != 17 {
		t.Errorf("got %q %d %v", name, size, ok)
	}
	if _, _, ok := ParseFileOpened("open failed, File: teg.gcod."); ok {
		t.Error("failure line accepted")
	}
}

func TestParseHostAction(t *testing.T) {
	cases := map[string][2]string{
		"//action:pause":                        {"pause", ""},
		"//action:prompt_begin Filament runout": {"prompt_begin", "Filament runout"},
		"//action:prompt_button Continue":       {"prompt_button", "Continue"},
		"//action:notification Heating... ":     {"notification", "Heating..."},
	}
	for line, want := range cases {
		a, p, ok := ParseHostAction(line)
		if !ok || a != want[0] || p != want[1] {
			t.Errorf("ParseHostAction(%q) = %q %q %v", line, a, p, ok)
		}
	}
	if _, _, ok := ParseHostAction("// debug text"); ok {
		t.Error("debug line taken for an action")
	}
}

func FuzzSDParsers(f *testing.F) {
	f.Add(`CUBE~1.GCO 12345 0x5A2C6B3F "my cube.gcode"`)
	f.Add("SD printing byte 123/456")
	f.Add("//action:prompt_begin x")
	f.Fuzz(func(t *testing.T, line string) {
		if e, ok := ParseFileListLine(line); ok && e.Name == "" {
			t.Fatalf("entry without a name from %q", line)
		}
		ParseSDStatus(line)
		ParseFileOpened(line)
		ParseHostAction(line)
	})
}
