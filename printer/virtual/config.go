package virtual

import (
	"fmt"
	"strings"
	"time"
)

// Resend styles: which Marlin version's reply follows a rejected line.
const (
	// ResendStyle11 is Marlin 1.1 (and 2.0 betas): `Resend: <n>` then `ok`.
	ResendStyle11 = "1.1"
	// ResendStyle20 is Marlin 2.0.x: `Resend: <n>` without an `ok`, so a
	// stop-and-wait host that waits for the ok stalls unless it treats the
	// Resend line as the acknowledgement.
	ResendStyle20 = "2.0"
	// ResendStyle21 is Marlin 2.1: `Resend: <n>` then an explicit `ok`.
	ResendStyle21 = "2.1"
)

// Dialects: the firmware family whose wire format the printer speaks.
const (
	// DialectMarlin is Marlin 2.1, the default.
	DialectMarlin = "marlin"
	// DialectRepetier is Repetier-Firmware 0.92 to 1.0 built with
	// ACK_WITH_LINENUMBER: `ok <n>` as soon as a line is queued, so before
	// the command's output; `Error:Wrong checksum` or `Error:expected line
	// <n> got <m>`, then an empty line, `Resend:<n>` and ok regardless of
	// ResendStyle; `skip <n>` and ok for the lines that follow a
	// rejected one; the request repeated every 200 ms until the line
	// comes; `wait` when idle; `:` ends a line; the first `*` starts the
	// checksum and a line without one passes; M110 gets its ok but is not
	// queued; lines without G, M or T are format errors; temperatures as
	// `T:22.00 /0 B:22.00 /0 B@:0 @:0`; `TargetExtr0:` and `TargetBed:`
	// when a target is set; `busy:processing` as keep-alive.
	//
	// NOTE: the boot banner and the Unknown command line are approximate.
	// The other strings follow Repetier-Firmware's Communication.cpp,
	// gcode.cpp and Commands.cpp.
	DialectRepetier = "repetier"
	// DialectPrusa is Prusa-Firmware 3.x for the MK2 and MK3. It has
	// Prusa's M115 with Cap:AUTOREPORT_POSITION (not AUTOREPORT_POS),
	// temperatures with T0:, P: and A: fields, M109 and M190 status lines
	// in the Marlin 1.x form and lower-case SD names. The first `*` starts
	// the checksum, an unnumbered line with a `*` gets `No Line Number
	// with checksum`, and received bytes above 0x7f are ignored. Resend
	// lines come without an ok, as in 3.1.x, unless ResendStyle is set.
	DialectPrusa = "prusa"
)

// Fault kinds recorded by Printer.Faults.
const (
	// FaultRewind is a firmware-initiated rewind (Config.RewindEvery).
	FaultRewind = "rewind"
	// FaultReset is a simulated firmware reset (Config.ResetAfterLines).
	FaultReset = "reset"
	// FaultM110Rejected is an M110 line rejected with a checksum error
	// (Config.RejectM110).
	FaultM110Rejected = "m110-rejected"
)

// Defaults of the Marlin build that the simulator models (Marlin
// Configuration.h and Configuration_adv.h of the 2.1 series).
const (
	DefaultFirmwareName = "Marlin 2.1.2.1 (virtual)"
	DefaultMachineType  = "Virtual Printer"
	DefaultUUID         = "cede2a2f-41a2-4748-9b12-c55c62f367ff"
	DefaultBufSize      = 4   // BUFSIZE
	DefaultPlannerSize  = 16  // BLOCK_BUFFER_SIZE
	DefaultMaxCmdSize   = 96  // MAX_CMD_SIZE
	DefaultRXBufferSize = 128 // RX_BUFFER_SIZE of the AVR and LPC HALs when unset
	DefaultRewindLines  = 8   // lines a Prusa MK3 rewinds on filament runout
	maxExtruders        = 8   // EXTRUDERS upper bound in Marlin

	// repetierFirmwareName and prusaFirmwareName are the FIRMWARE_NAME
	// values of the dialects when Config.FirmwareName is empty.
	repetierFirmwareName = "Repetier_0.92.9"
	prusaFirmwareName    = "Prusa-Firmware 3.12.2 based on Marlin"
)

// Config selects the simulated machine and its quirks. The zero value is
// valid. New replaces a zero Extruders, BufSize, PlannerSize, MaxCmdSize,
// RXBufferSize or RewindLines and empty strings with the defaults above;
// FirmwareName and ResendStyle default per Dialect. A zero Speed means no
// waiting, and booleans are taken as they are, so start from
// DefaultConfig to get a heated bed. A dialect switches on the quirks it
// always has (see the Dialect constants), regardless of their fields.
type Config struct {
	// LinkPath, if set, is a symlink created to the pty slave device. An
	// existing symlink is replaced; any other existing file is an error.
	LinkPath string
	// RecordPath, if set, is a file to which every executed command is
	// appended, one per line and written per line, in execution order.
	RecordPath string
	// Speed is the time factor for moves, heating, homing and dwells: 1 is
	// real time, 10 is ten times faster and 0 means no waiting at all.
	// Report intervals (M155, M154, M113, wait) stay in real seconds,
	// because hosts size their timeouts from them.
	Speed float64
	// Extruders is EXTRUDERS, the number of hotends (default 1, at most 8).
	Extruders int
	// HeatedBed adds a bed heater (B: in reports, M140 and M190). The zero
	// Config has none; DefaultConfig sets it.
	HeatedBed bool
	// BufSize is Marlin's BUFSIZE: queued command lines, including the one
	// being executed.
	BufSize int
	// PlannerSize is BLOCK_BUFFER_SIZE. As in Marlin's ring buffer, at most
	// PlannerSize-1 moves are queued at once, and a move that finds the
	// planner full delays its ok until a slot is free.
	PlannerSize int
	// MaxCmdSize is MAX_CMD_SIZE in bytes, including N and checksum. Like
	// Marlin, the firmware keeps MaxCmdSize-1 bytes of a line and ignores
	// the rest up to the end of the line.
	MaxCmdSize int
	// RXBufferSize is the serial receive buffer in bytes. While it is full
	// the simulator stops reading the pty, so a host that sends ahead
	// blocks in write, as on a USB CDC port, and no byte is dropped for
	// lack of room while the host is connected.
	RXBufferSize int
	// FirmwareName is the FIRMWARE_NAME value of M115. The banner prints it
	// without the part in parentheses.
	FirmwareName string
	// MachineType is the MACHINE_TYPE value of M115.
	MachineType string
	// UUID is the UUID value of M115.
	UUID string

	// ResendStyle is ResendStyle11, ResendStyle20 or ResendStyle21
	// (default).
	ResendStyle string
	// AdvancedOK turns on ADVANCED_OK: `ok N<line> P<free planner blocks>
	// B<free command slots>`, where N appears only for numbered lines.
	AdvancedOK bool
	// OKBeforeOutput sends each ok when its command starts, before the
	// command's output, as Repetier firmware does.
	OKBeforeOutput bool
	// ResendRatio is the percentage (0-100) of valid numbered lines that
	// are rejected with a checksum error anyway. The same line number is
	// never rejected twice in a row, so even 100 makes progress.
	ResendRatio int
	// NoBusyKeepalive turns off HOST_KEEPALIVE_FEATURE: no `echo:busy:
	// processing` while a command runs longer than the M113 interval.
	NoBusyKeepalive bool
	// GarbageOnOpen sends a line of one raw 0x80 byte after the banner, as
	// OctoPrint's virtual printer does to imitate line noise on connect.
	GarbageOnOpen bool
	// ResetAfterLines, if positive, simulates a firmware reset (a new
	// `start` banner and a cleared state) once per connection, after that
	// many accepted numbered lines were executed.
	ResetAfterLines int
	// FatalAfterLines, if positive, reports a thermal runaway and halts the
	// firmware (kill) once per connection, after that many accepted
	// numbered lines were executed.
	FatalAfterLines int
	// EmergencyParser turns on EMERGENCY_PARSER: M108, M112 and M410 act as
	// soon as their line is received, even while a command blocks.
	EmergencyParser bool
	// WaitWhenIdle turns on NO_TIMEOUTS: `wait` every second while the
	// command queue and the receive buffer are empty.
	WaitWhenIdle bool
	// Baud, if positive, paces the serial line at Baud/10 bytes per second
	// in each direction (8N1 framing). Zero means no pacing.
	Baud int
	// NoM117Echo stops M117 from echoing its message as `echo:<text>`.
	NoM117Echo bool
	// NoAutoreportPos builds Marlin without AUTO_REPORT_POSITION: M115
	// reports Cap:AUTOREPORT_POS:0 and M154 is an unknown command.
	NoAutoreportPos bool

	// Dialect is DialectMarlin (default), DialectRepetier or DialectPrusa.
	Dialect string
	// GluedOKs is the percentage (0-100) of oks written right after the
	// previous output line without its line feed, as in `File
	// deleted:x.gok` or an auto-report ending in `B@:0ok`. Only lines sent
	// while a command runs can get an ok glued to them: with GluedOKs on,
	// their line feed is held back until the next output, so they reach
	// the host up to one report interval late. A line that ends in a
	// letter keeps its line feed (see okMayGlue).
	GluedOKs int
	// DuplicateResend sends every resend request twice: after a rejected
	// line, whatever the error (checksum, missing checksum or line
	// number), a second line-number error, Resend and (per ResendStyle)
	// ok follow, as a line that a host had pipelined behind the rejected
	// one causes. Repetier repeats its resend request block instead, and
	// a rewind (RewindEvery) repeats its Resend and ok. The second request
	// is on the wire before the firmware reads the host's answer to the
	// first, so a host that answers both sends the line twice
	// (LineStats.Repeated).
	DuplicateResend bool
	// RejectM110 is how many numbered M110 lines per connection are
	// rejected with a checksum error, as line noise would do, before one
	// is accepted. The firmware then keeps its old line number and requests
	// the line after it. Only an M110 that changes the line number
	// counts, so a handshake's M110 N0 right after the boot passes and
	// the first M110 that a host sends at the start of a print is hit.
	RejectM110 int
	// DroppedOKs is the percentage (0-100) of command oks that are never
	// sent, as if line noise had eaten them, so the host has to recover by
	// its timeout. The oks after Resend lines and `ok T:` replies are
	// always sent.
	DroppedOKs int
	// RewindEvery, if positive, makes the firmware request earlier lines
	// again each time it has accepted that many numbered lines since the
	// connection or the previous rewind, as Prusa's filament sensor does.
	// It drops the commands it has queued but not run and replies to the
	// next numbered line n with `Resend: <n-RewindLines>`, or with the
	// first line it has not run if that is earlier. Then it runs the lines
	// from there again. Faults records each rewind.
	RewindEvery int
	// RewindLines is how many lines a rewind goes back (default 8); it must
	// be smaller than RewindEvery so that printing progresses.
	RewindLines int
	// AutoreportMidline is the percentage (0-100) of output lines in front
	// of which a temperature report is inserted out of turn while the M155
	// auto-report is on. Half of the reports are lines of their own, which
	// can land between Error: and Resend: or between Resend: and ok. The
	// other half have no line feed, so the line continues the report
	// (`... B@:0ok`).
	AutoreportMidline int
	// ColonSplits makes `:` end a line outside a comment, as old Marlin
	// 1.0 builds (stock Creality firmware) and Repetier do, so `M117 ETA:
	// 5 min` arrives as `M117 ETA` and ` 5 min`. After a rejected line the
	// firmware also drops the rest of it, up to its line feed.
	ColonSplits bool
	// FirstStarChecksum takes the first `*` of a numbered line as the start
	// of the checksum, as Repetier and Prusa do, instead of the last one as
	// Marlin 2 does, so a `*` in M117 text fails every attempt.
	FirstStarChecksum bool
	// ResetNUL prefixes the `start` of a simulated reset (ResetAfterLines)
	// with one to three NUL bytes, as a board whose UART glitches while it
	// resets sends them.
	ResetNUL bool
	// ResetMidLine makes a simulated reset cut off a temperature report
	// that the firmware is writing at a random byte, so `start` follows
	// the partial report on the same line.
	ResetMidLine bool
	// RXByteErrors is the probability (0 to 1) that a received byte of a
	// numbered line is replaced by another byte, as line noise does. The
	// leading N, the `*` and the line end are spared and no byte becomes
	// one of them, NUL or `:`, so the checksum detects every such error (a
	// changed byte always changes the XOR). Unnumbered lines are left
	// intact, because no firmware could detect errors in them.
	RXByteErrors float64
	// TXByteErrors is the probability (0 to 1) that a sent byte, line
	// feeds included, is replaced by another byte.
	TXByteErrors float64
	// ProcessingTime is the wall-clock time the firmware spends on each
	// command before executing it, like the parser of an 8-bit board. It
	// does not scale with Speed.
	ProcessingTime time.Duration
	// SDDir, if set, backs the simulated SD card with a directory: its
	// files are on the card at start (long name = file name, with an 8.3
	// alias), and M28/M29 and M30 write and delete files in it. Without
	// it the card starts empty and lives in memory.
	SDDir string
	// NoSDCard leaves the card slot empty: the banner and M21 print `SD
	// init fail`, and the other SD commands `No media`.
	NoSDCard bool
	// NoSDSupport builds the firmware without SDSUPPORT: Cap:SDCARD:0, and
	// M20 to M30 are unknown commands.
	NoSDSupport bool
	// NoSDAutoReport builds the firmware without AUTO_REPORT_SD_STATUS:
	// Cap:AUTOREPORT_SD_STATUS:0, and M27 S<n> prints the status once like
	// a bare M27, as Marlin does then.
	NoSDAutoReport bool
	// SDWriteFailAfter, if positive, makes an M28 upload fail after that
	// many lines: each further line gets `Error:error writing to file`
	// (and its ok, as in Marlin) and is not stored.
	SDWriteFailAfter int
	// Seed seeds the random choices of GluedOKs, AutoreportMidline,
	// ResetNUL, ResetMidLine and the byte errors. Zero takes a seed from
	// the clock, which Run logs.
	Seed int64
}

// DefaultConfig returns the configuration of a stock single-extruder
// printer with a heated bed, running in real time. FirmwareName and
// ResendStyle stay empty, so that New picks them for the Dialect.
func DefaultConfig() Config {
	c := Config{
		Speed:     1,
		Extruders: 1,
		HeatedBed: true,
	}.withDefaults()
	c.FirmwareName = ""
	c.ResendStyle = ""
	return c
}

func (c Config) withDefaults() Config {
	if c.Extruders == 0 {
		c.Extruders = 1
	}
	if c.BufSize == 0 {
		c.BufSize = DefaultBufSize
	}
	if c.PlannerSize == 0 {
		c.PlannerSize = DefaultPlannerSize
	}
	if c.MaxCmdSize == 0 {
		c.MaxCmdSize = DefaultMaxCmdSize
	}
	if c.RXBufferSize == 0 {
		c.RXBufferSize = DefaultRXBufferSize
	}

	if c.Dialect == "" {
		c.Dialect = DialectMarlin
	}
	switch c.Dialect {
	case DialectRepetier:
		c.ColonSplits = true
		c.FirstStarChecksum = true
		c.WaitWhenIdle = true
		if c.FirmwareName == "" {
			c.FirmwareName = repetierFirmwareName
		}
	case DialectPrusa:
		c.FirstStarChecksum = true
		if c.FirmwareName == "" {
			c.FirmwareName = prusaFirmwareName
		}
		if c.ResendStyle == "" {
			c.ResendStyle = ResendStyle20
		}
	}
	if c.FirmwareName == "" {
		c.FirmwareName = DefaultFirmwareName
	}

	if c.RewindLines == 0 {
		c.RewindLines = DefaultRewindLines
	}
	if c.MachineType == "" {
		c.MachineType = DefaultMachineType
	}
	if c.UUID == "" {
		c.UUID = DefaultUUID
	}
	if c.ResendStyle == "" {
		c.ResendStyle = ResendStyle21
	}
	return c
}

// Validate reports the first invalid field of c after defaults are
// applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Speed < 0:
		return fmt.Errorf("invalid speed %g: use 0 (no waiting) or a positive time factor", c.Speed)
	case c.Extruders < 1 || c.Extruders > maxExtruders:
		return fmt.Errorf("invalid extruder count %d: use 1 to %d", c.Extruders, maxExtruders)
	case c.BufSize < 1:
		return fmt.Errorf("invalid command buffer size %d: use at least 1", c.BufSize)
	case c.PlannerSize < 2:
		return fmt.Errorf("invalid planner size %d: use at least 2, because one ring slot stays empty", c.PlannerSize)
	case c.MaxCmdSize < 8:
		return fmt.Errorf("invalid max command size %d: use at least 8 bytes", c.MaxCmdSize)
	case c.RXBufferSize < 1:
		return fmt.Errorf("invalid receive buffer size %d: use at least 1 byte", c.RXBufferSize)
	case c.ResendRatio < 0 || c.ResendRatio > 100:
		return fmt.Errorf("invalid resend ratio %d: use a percentage from 0 to 100", c.ResendRatio)
	case c.ResetAfterLines < 0:
		return fmt.Errorf("invalid reset-after line count %d: use 0 (off) or a positive count", c.ResetAfterLines)
	case c.FatalAfterLines < 0:
		return fmt.Errorf("invalid fatal-after line count %d: use 0 (off) or a positive count", c.FatalAfterLines)
	case c.SDWriteFailAfter < 0:
		return fmt.Errorf("invalid SD write-fail line count %d: use 0 (off) or a positive count", c.SDWriteFailAfter)
	case c.Baud < 0:
		return fmt.Errorf("invalid baud rate %d: use 0 (no pacing) or a positive rate", c.Baud)
	case strings.ContainsAny(c.FirmwareName+c.MachineType+c.UUID, "\r\n"):
		return fmt.Errorf("invalid firmware name, machine type or UUID: they must fit on one line")
	}
	if err := c.validateQuirks(); err != nil {
		return err
	}
	switch c.ResendStyle {
	case ResendStyle11, ResendStyle20, ResendStyle21:
	default:
		return fmt.Errorf("invalid resend style %q: use %s, %s or %s", c.ResendStyle, ResendStyle11, ResendStyle20, ResendStyle21)
	}
	return nil
}

// validateQuirks checks the fault and dialect fields of a Config with
// defaults applied.
func (c Config) validateQuirks() error {
	percents := []struct {
		name  string
		value int
	}{{"glued-ok", c.GluedOKs}, {"dropped-ok", c.DroppedOKs}, {"autoreport-midline", c.AutoreportMidline}}
	for _, p := range percents {
		if p.value < 0 || p.value > 100 {
			return fmt.Errorf("invalid %s rate %d: use a percentage from 0 to 100", p.name, p.value)
		}
	}
	switch {
	case c.RejectM110 < 0:
		return fmt.Errorf("invalid M110 rejection count %d: use 0 (off) or a positive count", c.RejectM110)
	case c.RewindEvery < 0:
		return fmt.Errorf("invalid rewind interval %d: use 0 (off) or a positive line count", c.RewindEvery)
	case c.RewindLines < 1:
		return fmt.Errorf("invalid rewind depth %d: use a positive line count", c.RewindLines)
	case c.RewindEvery > 0 && c.RewindLines >= c.RewindEvery:
		return fmt.Errorf("invalid rewind depth %d for a rewind every %d lines: the depth must be smaller, or printing never gets past the rewinds", c.RewindLines, c.RewindEvery)
	case c.RXByteErrors < 0 || c.RXByteErrors > 1 || c.TXByteErrors < 0 || c.TXByteErrors > 1:
		return fmt.Errorf("invalid byte error rate (rx %g, tx %g): use a probability per byte from 0 to 1", c.RXByteErrors, c.TXByteErrors)
	case c.ProcessingTime < 0:
		return fmt.Errorf("invalid processing time %v: use 0 or a positive duration", c.ProcessingTime)
	case (c.ResetNUL || c.ResetMidLine) && c.ResetAfterLines == 0:
		return fmt.Errorf("reset-nul and reset-mid-line change the simulated reset: set reset-after-lines too")
	}
	switch c.Dialect {
	case DialectMarlin, DialectRepetier, DialectPrusa:
	default:
		return fmt.Errorf("invalid dialect %q: use %s, %s or %s", c.Dialect, DialectMarlin, DialectRepetier, DialectPrusa)
	}
	return nil
}

// okAfterResend reports whether the resend style follows `Resend:` with
// `ok`.
func (c Config) okAfterResend() bool {
	return c.ResendStyle != ResendStyle20
}

// bannerVersion returns the firmware name without its build date part, as
// the boot banner prints it.
func (c Config) bannerVersion() string {
	name, _, _ := strings.Cut(c.FirmwareName, " (")
	return name
}

func (c Config) repetier() bool { return c.Dialect == DialectRepetier }
func (c Config) prusa() bool    { return c.Dialect == DialectPrusa }
