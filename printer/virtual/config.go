package virtual

import (
	"fmt"
	"strings"
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
	maxExtruders        = 8   // EXTRUDERS upper bound in Marlin
)

// Config selects the simulated machine and its quirks. The zero value is
// valid. New replaces a zero Extruders, BufSize, PlannerSize, MaxCmdSize
// or RXBufferSize and empty strings with the defaults above. A zero Speed
// means no waiting, and booleans are taken as they are, so start from
// DefaultConfig to get a heated bed.
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
}

// DefaultConfig returns the configuration of a stock single-extruder
// printer with a heated bed, running in real time.
func DefaultConfig() Config {
	return Config{
		Speed:     1,
		Extruders: 1,
		HeatedBed: true,
	}.withDefaults()
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
	if c.FirmwareName == "" {
		c.FirmwareName = DefaultFirmwareName
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
	case c.Baud < 0:
		return fmt.Errorf("invalid baud rate %d: use 0 (no pacing) or a positive rate", c.Baud)
	case strings.ContainsAny(c.FirmwareName+c.MachineType+c.UUID, "\r\n"):
		return fmt.Errorf("invalid firmware name, machine type or UUID: they must fit on one line")
	}
	switch c.ResendStyle {
	case ResendStyle11, ResendStyle20, ResendStyle21:
	default:
		return fmt.Errorf("invalid resend style %q: use %s, %s or %s", c.ResendStyle, ResendStyle11, ResendStyle20, ResendStyle21)
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
