// Package hooks is the worker side of printbridge. It loads the events:
// section of an OctoPrint config.yaml and runs its subscriptions (system
// commands and G-code) for events that arrive on the bus. Placeholders are
// rendered as OctoPrint 1.11.3 and later render them.
//
// Rendering follows Python: every placeholder value is converted with
// str() (True, None, 10.0, dicts as their repr) and the template is
// rendered with str.format(**params), including its error classes.
//
// Deliberate differences from OctoPrint 1.11:
//
//   - A system subscription without a shell key runs without a shell
//     (OctoPrint still uses one, and announces the change for a later
//     release). Without a shell, the template is split into arguments by
//     POSIX rules (Python's shlex.split) first and each argument is
//     rendered on its own, so no value can add an argument. OctoPrint
//     passes the whole string as the program name, which fails for any
//     command with arguments. With shell: true, values are quoted with
//     shlex.quote and the command runs under /bin/sh -c, as in OctoPrint.
//     Without a shell, the script argument of a POSIX shell run with -c
//     (/bin/sh -c "echo {name}") is rendered as a shell: true command,
//     with quoted values, because the shell parses it as code.
//   - Each hook run has a timeout (printbridge.hook_timeout, or the
//     subscription's timeout key) that covers its whole command list.
//     When it expires, the running command's process group is killed. At
//     most max_concurrent_hooks system hooks run at once. Output is
//     captured (the last 4 KiB are kept) instead of inherited, and stdin
//     is /dev/null. The environment adds PRINTBRIDGE_EVENT,
//     PRINTBRIDGE_EVENT_ID and PRINTBRIDGE_PRINTER.
//   - A template error other than an unknown placeholder skips only its
//     own subscription; OctoPrint also skips the later subscriptions of
//     the same event. Templates that can never render are reported when
//     the config is loaded, and the entry is not loaded.
//   - Attribute access in a template ({name.upper}) is an error; Python
//     renders the repr of a bound str method there.
//   - A G-code hook whose rendered lines would fire its own event (G28 on
//     Home, M300 on Alert, G1 Z.. on ZChange, M114 on PositionUpdate, T0
//     on ToolChange, ...) is not sent and the run fails with ErrLoopGuard,
//     where OctoPrint loops forever. The codes are matched in either case.
//     A placeholder value with a line break fails the run instead of
//     adding a line. The worker waits for the edge's final reply, so the
//     result shows whether the firmware took the lines.
//   - Results (exit code, duration, output tail) are logged and published
//     on the printer's hook topic; OctoPrint only logs failures.
//
// Kept from OctoPrint: an unknown placeholder skips the subscription with
// a warning; {__fileorigin} exists only while a file is selected (the
// docs promise "NO FILE"); {__filepath} defaults to "NO PATH"; a quoted
// enabled: "false" enables the hook; an event listed twice runs the hook
// twice; command lists stop at the first failing command.
//
// OctoPrint reads its hooks once, at start. Worker.Reload swaps in a new
// Config while the worker runs. Each event runs all of its hooks with the
// config in force when the worker received it. The settings that the bus
// subscriptions were made from keep their running values until a restart. Metrics (NewMetrics, WithMetrics) count hook runs by result,
// their durations, and the events received, redelivered, invalid and
// dropped.
//
// Concurrency: Worker owns its goroutines and Run waits for all of them
// before it returns; Worker documents the ordering of hooks. Config and
// Subscription are read-only once given to a Worker and safe to share.
package hooks
