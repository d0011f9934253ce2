package hooks

import (
	"testing"
	"time"

	"github.com/printbridge/printbridge/bridge"
)

func FuzzLoadConfig(f *testing.F) {
	seeds := []string{
		"events:\n  enabled: true\n  subscriptions:\n  - event: PrintDone\n    command: notify {name}\n    type: system\n",
		"events:\n  subscriptions:\n  - event: [Connected, Home]\n    type: gcode\n    command: [M117 {__eventname}, G28]\n",
		"events:\n  subscriptions:\n  - {event: PrintDone, type: system, shell: true, command: 'echo {name} | cat', cwd: /tmp, timeout: 5s}\n",
		"events:\n  subscriptions:\n  - event: ZChange\n    type: gcode\n    command: G1 Z{new}\n",
		"printbridge:\n  mqtt: tcp://127.0.0.1:1883\n  printers: [a, b]\n  hook_timeout: 90s\nevents: {enabled: false}\n",
		"events:\n  subscriptions:\n  - &a {event: PrintDone, command: x}\n  - *a\n",
		"events:\n  subscriptions:\n  - event: PrintDone\n    command: 'x {name!r:>{width}}'\n    type: system\n",
		"events: [1, 2]\n",
		"? [a]\n: b\n",
		"events:\n  subscriptions:\n  - event: PrintDone\n    enabled: \"false\"\n    command: \"'unterminated\"\n    type: system\n",
		"",
		"events:\n  subscriptions:\n  - {event: PrintDone, type: system, shell: false, command: 'env -uX -S \"-i sh -c\" \"echo {name}\" sh {name}'}\n",
		"events:\n  subscriptions:\n  - {event: PrintDone, type: system, shell: true, command: 'ssh -p 2 h -- x; flock f -c y; sudo -s z; . ./a; python3 -m b {name}'}\n",
		"events:\n  subscriptions:\n  - {event: PrintDone, type: system, shell: true, command: 'echo $(( {name} )) $[ {x} ] ${{a[{i}]:{o}}}; (( {n} )); [[ {l} -gt 1 ]]; let {n}; declare -i v={v}; printf -v {p} x'}\n",
		"events:\n  subscriptions:\n  - {event: PrintDone, type: system, shell: false, command: 'bash -c \"echo {name} | xargs -I X sh -c echo\\\\ X; printf %s {n} | nice sh; echo {s} | . /dev/stdin\"'}\n",
		"events:\n  subscriptions:\n  - {event: PrintDone, type: system, shell: true, command: 'tmux setenv -g N {name} ; watch -x x {n}; scp ./{p} h:/d/ 2>&1 | sh -c \"\"$@\" ${{1}}\" sh {q} <<< {r}; make N={m} &>> l; a=( $(( {i} )) ) {j}'}\n",
		"events:\n  subscriptions:\n  - {event: PrintDone, type: system, shell: false, command: 'sudo -hx --us u env --chd d timeout 5 find . -exec rsync -e ssh ./{p} h: ; sh -c \"$0 $@ ${{\" {a} $'}\n",
		"events:\n  subscriptions:\n  - {event: PrintDone, type: system, shell: true, command: \"cat <<E\\n$((\\nE\\n# [[ ${{\\nx=$( ( echo ) ); echo {name} | xargs -i -- -d\"}\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	env := &bridge.Envelope{Schema: 1, ID: "0193a6f0-0000-7000-8000-000000000001", Printer: "p1", Event: bridge.EventPrintDone,
		Payload: bridge.Payload{{Key: "name", Value: "a b;c"}, {Key: "new", Value: 0.2}}}
	params := Placeholders(env, time.Unix(1_800_000_000, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, problems, err := ParseConfig("config.yaml", data)
		if err != nil {
			if cfg != nil {
				t.Fatalf("ParseConfig returned a config with error %v", err)
			}
			return
		}
		for _, p := range problems {
			if p.Line < 1 || p.Column < 1 || p.Message == "" {
				t.Fatalf("problem without position or message: %+v", p)
			}
		}
		for _, sub := range cfg.Subscriptions {
			// An entry may load without events (event: 0 is kept with a
			// warning and never runs), but never without commands.
			if len(sub.Commands) == 0 {
				t.Fatalf("loaded subscription without commands: %+v", sub)
			}
			// Rendering a loaded entry may fail (an unknown placeholder),
			// but never panics, and without a shell never changes the
			// number of arguments.
			switch sub.Type {
			case TypeSystem:
				commands, err := renderSystem(sub, mapLookup(params))
				if err != nil {
					continue
				}
				for i, c := range commands {
					if !sub.Shell && len(c.argv) != len(sub.Commands[i].Args) {
						t.Fatalf("command %q rendered to %d arguments, template has %d", sub.Commands[i].Template, len(c.argv), len(sub.Commands[i].Args))
					}
				}
			case TypeGcode:
				_, _ = renderGcode(sub, env.Event, mapLookup(params))
			}
		}
	})
}
