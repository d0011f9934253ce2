package hooks

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recordFileEnv names the file where the recorder appends one JSON line
// per call. The test binary turns into the recorder when it is started
// through a link named "record", so hooks can run a real program that
// reports exactly the argv, working directory and environment it got.
const recordFileEnv = "HOOKS_TEST_RECORD_FILE"

func TestMain(m *testing.M) {
	if path := os.Getenv(recordFileEnv); path != "" && filepath.Base(os.Args[0]) == "record" {
		os.Exit(record(path))
	}
	if spec := os.Getenv(workerProcEnv); spec != "" {
		os.Exit(runWorkerProcess(spec))
	}
	os.Exit(m.Run())
}

// recordedCall is what one recorder run saw.
type recordedCall struct {
	Args    []string `json:"args"`
	Cwd     string   `json:"cwd"`
	Event   string   `json:"event"`
	EventID string   `json:"event_id"`
	Printer string   `json:"printer"`
}

func record(path string) int {
	cwd, _ := os.Getwd()
	line, err := json.Marshal(recordedCall{
		Args: os.Args[1:], Cwd: cwd, Event: os.Getenv("PRINTBRIDGE_EVENT"),
		EventID: os.Getenv("PRINTBRIDGE_EVENT_ID"), Printer: os.Getenv("PRINTBRIDGE_PRINTER"),
	})
	if err != nil {
		return 99
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return 98
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		return 97
	}
	return 0
}

// recorder is a "record" program on PATH for one test.
type recorder struct {
	dir  string
	file string
}

// newRecorder links the test binary as "record" into a new directory at the
// front of PATH. It uses t.Setenv, so tests that call it cannot run in
// parallel.
func newRecorder(t *testing.T) *recorder {
	t.Helper()
	r := &recorder{dir: t.TempDir()}
	r.file = filepath.Join(r.dir, "calls.jsonl")
	r.link(t, r.dir)
	t.Setenv("PATH", r.dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv(recordFileEnv, r.file)
	// A race-enabled binary sleeps 1s at exit by default; the recorder
	// has nothing to report.
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	return r
}

// link puts a "record" link into dir.
func (r *recorder) link(t *testing.T, dir string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("find test binary: %v", err)
	}
	if err := os.Symlink(exe, filepath.Join(dir, "record")); err != nil {
		t.Fatalf("link recorder: %v", err)
	}
}

func (r *recorder) calls(t *testing.T) []recordedCall {
	t.Helper()
	f, err := os.Open(r.file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("open recorder output: %v", err)
	}
	defer f.Close()
	var out []recordedCall
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var c recordedCall
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("recorder line %q: %v", sc.Text(), err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read recorder output: %v", err)
	}
	return out
}

func argvString(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = Quote(a)
	}
	return strings.Join(quoted, " ")
}
