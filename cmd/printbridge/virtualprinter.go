package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/printbridge/printbridge/printer/virtual"
)

func init() {
	register("virtual-printer", "run a Marlin-like printer simulator on a pseudo-terminal", runVirtualPrinter)
}

// switchValue is a boolean flag that also accepts on/off and yes/no, so a
// scenario file can contain `busy-keepalive: off`.
type switchValue struct{ on *bool }

func (v switchValue) String() string {
	if v.on == nil || !*v.on {
		return "off"
	}
	return "on"
}

func (v switchValue) Set(s string) error {
	switch strings.ToLower(s) {
	case "on", "true", "yes", "1":
		*v.on = true
	case "off", "false", "no", "0":
		*v.on = false
	default:
		return fmt.Errorf("invalid switch value %q: use on or off", s)
	}
	return nil
}

func (v switchValue) IsBoolFlag() bool { return true }

// virtualPrinterFlags binds the simulator's configuration to fs. Switches
// whose Marlin default is on are stored inverted in virtual.Config, and
// the dialect, byte error and processing time flags are converted after
// parsing (see apply).
type virtualPrinterFlags struct {
	cfg           virtual.Config
	busyKeepalive bool
	m117Echo      bool
	autoreportPos bool
	sdCard        bool
	sdSupport     bool
	repetier      bool
	prusa         bool
	byteErrors    float64
	rxByteErrors  float64 // negative: take byteErrors
	txByteErrors  float64 // negative: take byteErrors
	processingUS  int
	logFormat     string
	logLevel      string
}

func (o *virtualPrinterFlags) register(fs *flag.FlagSet) {
	c := &o.cfg
	fs.StringVar(&c.LinkPath, "link", "", "create this symlink to the pty device (an existing symlink is replaced); removed on exit after SIGTERM or SIGINT, left behind by SIGKILL")
	fs.StringVar(&c.RecordPath, "record", "", "append every executed command to this file, one per line")
	fs.Float64Var(&c.Speed, "speed", 1, "time factor for moves, heating and dwells: 1 is real time, 10 ten times faster, 0 no waiting")
	fs.IntVar(&c.Extruders, "extruders", 1, "number of hotends (1-8)")
	fs.Var(switchValue{&c.HeatedBed}, "heated-bed", "simulate a heated bed (on or off)")
	fs.IntVar(&c.BufSize, "bufsize", virtual.DefaultBufSize, "Marlin BUFSIZE: command lines queued, the executing one included")
	fs.IntVar(&c.PlannerSize, "planner-size", virtual.DefaultPlannerSize, "Marlin BLOCK_BUFFER_SIZE: planner ring slots (one stays empty)")
	fs.IntVar(&c.MaxCmdSize, "max-cmd-size", virtual.DefaultMaxCmdSize, "Marlin MAX_CMD_SIZE in bytes, line number and checksum included")
	fs.IntVar(&c.RXBufferSize, "rx-buffer", virtual.DefaultRXBufferSize, "serial receive buffer in bytes")
	fs.StringVar(&c.FirmwareName, "firmware-name", "", "FIRMWARE_NAME reported by M115 (default \""+virtual.DefaultFirmwareName+"\", or the dialect's)")
	fs.StringVar(&c.MachineType, "machine-type", virtual.DefaultMachineType, "MACHINE_TYPE reported by M115")

	fs.StringVar(&c.ResendStyle, "resend-style", "", "reply to a rejected line: 1.1 and 2.1 send Resend then ok, 2.0 only Resend (quote it in YAML: \"2.0\"); default 2.1, with --prusa 2.0")
	fs.Var(switchValue{&c.AdvancedOK}, "advanced-ok", "ADVANCED_OK: ok N<line> P<free planner blocks> B<free command slots>")
	fs.Var(switchValue{&c.OKBeforeOutput}, "ok-before-output", "send each ok before the command's output, as Repetier firmware does")
	fs.IntVar(&c.ResendRatio, "resend-ratio", 0, "percentage (0-100) of numbered lines rejected with a checksum error")
	fs.Var(switchValue{&o.busyKeepalive}, "busy-keepalive", "send echo:busy: processing while a command runs longer than the M113 interval")
	fs.Var(switchValue{&c.GarbageOnOpen}, "garbage-on-open", "send a line of one 0x80 byte after the boot banner")
	fs.IntVar(&c.ResetAfterLines, "reset-after-lines", 0, "simulate a firmware reset (new start banner) after this many numbered lines, once per connection; 0 is off")
	fs.IntVar(&c.FatalAfterLines, "fatal-after-lines", 0, "report a thermal runaway and halt after this many numbered lines, once per connection; 0 is off")
	fs.Var(switchValue{&c.EmergencyParser}, "emergency-parser", "EMERGENCY_PARSER: act on M108, M112 and M410 as soon as they arrive")
	fs.Var(switchValue{&c.WaitWhenIdle}, "wait-when-idle", "NO_TIMEOUTS: send wait every second while idle")
	fs.IntVar(&c.Baud, "baud", 0, "pace the serial line at baud/10 bytes per second in each direction; 0 is unpaced")
	fs.Var(switchValue{&o.m117Echo}, "m117-echo", "echo M117 messages as echo:<text>")
	fs.Var(switchValue{&o.autoreportPos}, "autoreport-pos", "AUTO_REPORT_POSITION: report Cap:AUTOREPORT_POS:1 and send the position every M154 S<seconds>")
	fs.IntVar(&o.processingUS, "processing-time-us", 0, "time in microseconds the firmware spends on each command before executing it (not scaled by --speed)")

	fs.Var(switchValue{&o.repetier}, "repetier", "speak Repetier-Firmware's dialect: ok <n> on receipt, Error:Wrong checksum, Resend:<n>, wait, TargetExtr0:")
	fs.Var(switchValue{&o.prusa}, "prusa", "speak Prusa-Firmware 3.x's dialect: Prusa M115 and reports, Cap:AUTOREPORT_POSITION, Resend without ok")
	fs.IntVar(&c.GluedOKs, "glued-oks", 0, "percentage (0-100) of oks written without a line feed after the previous output line")
	fs.Var(switchValue{&c.DuplicateResend}, "duplicate-resend", "send every resend request twice (after checksum and line-number errors and rewinds), as a pipelined line behind a rejected one causes")
	fs.IntVar(&c.RejectM110, "reject-m110", 0, "reject this many numbered M110 lines per connection with a checksum error; an M110 that keeps the line number (the handshake's) passes")
	fs.IntVar(&c.DroppedOKs, "dropped-oks", 0, "percentage (0-100) of command oks never sent, as line noise loses them")
	fs.IntVar(&c.RewindEvery, "rewind", 0, "ask for earlier lines again every this many accepted numbered lines, as Prusa's filament sensor does; 0 is off")
	fs.IntVar(&c.RewindLines, "rewind-lines", virtual.DefaultRewindLines, "how many lines a rewind goes back")
	fs.IntVar(&c.AutoreportMidline, "autoreport-midline", 0, "percentage (0-100) of output lines that get a temperature report in front of them while M155 is on, half of them glued to it")
	fs.Var(switchValue{&c.ColonSplits}, "colon-splits", "end a line at each ':' outside comments, as old Creality (Marlin 1.0) firmware does")
	fs.Var(switchValue{&c.FirstStarChecksum}, "first-star-checksum", "take the first '*' of a line as the start of its checksum, as Repetier and Prusa do")
	fs.Var(switchValue{&c.ResetNUL}, "reset-nul", "prefix the start line of a simulated reset (--reset-after-lines) with NUL bytes")
	fs.Var(switchValue{&c.ResetMidLine}, "reset-mid-line", "let a simulated reset cut off a temperature report, so start follows it on the same line")
	fs.Float64Var(&o.byteErrors, "byte-errors", 0, "probability (0-1) per byte of corruption in both directions")
	fs.Float64Var(&o.rxByteErrors, "rx-byte-errors", -1, "probability (0-1) per byte of corruption of numbered lines from the host; negative takes --byte-errors")
	fs.Float64Var(&o.txByteErrors, "tx-byte-errors", -1, "probability (0-1) per byte of corruption of output to the host; negative takes --byte-errors")
	fs.StringVar(&c.SDDir, "sd-dir", "", "back the simulated SD card with this directory (its files are on the card; uploads and deletes change it); empty keeps the card in memory")
	fs.Var(switchValue{&o.sdCard}, "sd-card", "put a card in the SD slot; off makes M21 report SD init fail")
	fs.Var(switchValue{&o.sdSupport}, "sd-support", "build the firmware with SDSUPPORT; off reports Cap:SDCARD:0 and makes M20-M30 unknown commands")
	fs.IntVar(&c.SDWriteFailAfter, "sd-write-fail-after", 0, "fail an SD upload (M28) after this many lines with Marlin's write error; 0 is off")
	fs.Int64Var(&c.Seed, "seed", 0, "seed of the random quirks, to repeat a run; 0 takes one from the clock (logged at start)")

	fs.StringVar(&o.logFormat, "log-format", "text", "log format on stderr: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// virtualPrinterFlagRanges are the ranges of the virtual printer's
// numeric flags. virtual.Config.Validate checks the same limits, but it
// takes a default for some zero values and names fields, not flags.
var virtualPrinterFlagRanges = []flagRange{
	atLeast("speed", 0, "give 0 (no waiting) or a positive time factor, such as 1 for real time"),
	{name: "extruders", min: 1, max: 8, expected: "give a number of hotends from 1 to 8"},
	atLeast("bufsize", 1, "give Marlin's BUFSIZE, 1 or more (4 in Marlin's default configuration)"),
	atLeast("planner-size", 2, "give 2 or more planner slots, because one ring slot stays empty"),
	atLeast("max-cmd-size", 8, "give Marlin's MAX_CMD_SIZE in bytes, 8 or more (96 in Marlin's default configuration)"),
	atLeast("rx-buffer", 1, "give the serial receive buffer in bytes, 1 or more, such as 128"),
	{name: "resend-ratio", min: 0, max: 100, expected: "give a percentage from 0 to 100"},
	atLeast("reset-after-lines", 0, "give 0 (off) or a positive line count"),
	atLeast("fatal-after-lines", 0, "give 0 (off) or a positive line count"),
	atLeast("baud", 0, "give 0 (unpaced) or a positive baud rate, such as 115200"),
	atLeast("processing-time-us", 0, "give 0 or a positive number of microseconds"),
	{name: "glued-oks", min: 0, max: 100, expected: "give a percentage from 0 to 100"},
	atLeast("reject-m110", 0, "give 0 (off) or a positive count"),
	{name: "dropped-oks", min: 0, max: 100, expected: "give a percentage from 0 to 100"},
	atLeast("rewind", 0, "give 0 (off) or a positive line count"),
	atLeast("rewind-lines", 1, "give a positive line count"),
	{name: "autoreport-midline", min: 0, max: 100, expected: "give a percentage from 0 to 100"},
	{name: "byte-errors", min: 0, max: 1, expected: "give a probability per byte from 0 to 1"},
	{name: "rx-byte-errors", min: math.Inf(-1), max: 1, expected: "give a probability per byte from 0 to 1, or a negative value to take --byte-errors"},
	{name: "tx-byte-errors", min: math.Inf(-1), max: 1, expected: "give a probability per byte from 0 to 1, or a negative value to take --byte-errors"},
	atLeast("sd-write-fail-after", 0, "give 0 (off) or a positive line count"),
}

// apply converts the flags that virtual.Config holds in another form.
func (o *virtualPrinterFlags) apply() error {
	o.cfg.NoBusyKeepalive = !o.busyKeepalive
	o.cfg.NoM117Echo = !o.m117Echo
	o.cfg.NoAutoreportPos = !o.autoreportPos
	o.cfg.NoSDCard = !o.sdCard
	o.cfg.NoSDSupport = !o.sdSupport
	switch {
	case o.repetier && o.prusa:
		return errors.New("--repetier and --prusa exclude each other: choose one dialect")
	case o.repetier:
		o.cfg.Dialect = virtual.DialectRepetier
	case o.prusa:
		o.cfg.Dialect = virtual.DialectPrusa
	}
	o.cfg.RXByteErrors, o.cfg.TXByteErrors = o.byteErrors, o.byteErrors
	if o.rxByteErrors >= 0 {
		o.cfg.RXByteErrors = o.rxByteErrors
	}
	if o.txByteErrors >= 0 {
		o.cfg.TXByteErrors = o.txByteErrors
	}
	if o.processingUS < 0 {
		return fmt.Errorf("invalid --processing-time-us %d: use 0 or a positive number of microseconds", o.processingUS)
	}
	o.cfg.ProcessingTime = time.Duration(o.processingUS) * time.Microsecond
	return nil
}

func runVirtualPrinter(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("virtual-printer", flag.ContinueOnError)
	o := &virtualPrinterFlags{cfg: virtual.DefaultConfig(), busyKeepalive: true, m117Echo: true, autoreportPos: true, sdCard: true, sdSupport: true}
	o.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: printbridge virtual-printer [flags]")
		fmt.Fprintln(fs.Output())
		fmt.Fprintln(fs.Output(), "Runs a Marlin 2.1-like firmware on a pseudo-terminal and prints")
		fmt.Fprintln(fs.Output(), "\"virtual printer ready on <device>\" once hosts can open it. A scenario")
		fmt.Fprintln(fs.Output(), "file is a --config YAML file whose keys are these flag names.")
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr, true); err != nil {
		return err
	}
	if err := checkFlagRanges(fs, virtualPrinterFlagRanges); err != nil {
		return err
	}
	if err := o.apply(); err != nil {
		return err
	}

	log, err := newLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	p, err := virtual.New(o.cfg, log)
	if err != nil {
		return fmt.Errorf("start virtual printer: %w", err)
	}
	ready := "virtual printer ready on " + p.Path()
	if o.cfg.LinkPath != "" {
		ready += " (link " + o.cfg.LinkPath + ")"
	}
	fmt.Fprintln(stdout, ready)

	runErr := p.Run(ctx)
	return errors.Join(runErr, p.Close())
}
