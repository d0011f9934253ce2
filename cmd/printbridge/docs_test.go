package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/printbridge/printbridge/hooks"
)

// yamlBlocks returns the ```yaml blocks of a Markdown file with the line
// each starts on.
func yamlBlocks(t *testing.T, path string) (blocks []string, lines []int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cur []string
	in := false
	start := 0
	for i, line := range strings.Split(string(data), "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "```yaml":
			in, cur, start = true, nil, i+2
		case in && strings.TrimSpace(line) == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n"))
			lines = append(lines, start)
		case in:
			cur = append(cur, line)
		}
	}
	return blocks, lines
}

// TestDocsYAMLExamplesLoad parses every YAML example of the README and
// docs/, as a reader copies them. It also loads the hook entries among
// them (a list of entries with an event) as a worker config, because an
// example with a ": " in a plain value once failed to parse.
func TestDocsYAMLExamplesLoad(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, filepath.Join("..", "..", "README.md"))
	checked := 0
	for _, path := range paths {
		blocks, lines := yamlBlocks(t, path)
		for i, block := range blocks {
			where := filepath.Base(path) + ":" + strconv.Itoa(lines[i])
			var doc any
			if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
				t.Errorf("%s: example is invalid YAML: %v", where, err)
				continue
			}
			checked++
			entries, ok := doc.([]any)
			if !ok || len(entries) == 0 {
				continue
			}
			first, ok := entries[0].(map[string]any)
			if _, hasEvent := first["event"]; !ok || !hasEvent {
				continue
			}
			indented := "  " + strings.ReplaceAll(block, "\n", "\n  ")
			cfg := "events:\n  subscriptions:\n" + indented + "\n"
			_, problems, err := hooks.ParseConfig(where, []byte(cfg))
			if err != nil {
				t.Errorf("%s: hook example does not load: %v", where, err)
				continue
			}
			if hooks.HasErrors(problems) {
				t.Errorf("%s: hook example has errors: %v", where, problems)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no YAML examples found in the docs")
	}
}
