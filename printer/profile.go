package printer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Profile is a printer profile with the keys of OctoPrint's printer
// profiles that printbridge uses, spelled as OctoPrint spells them.
// NOTE: other OctoPrint profile keys (axes, color, extruder.offsets) are
// rejected as unknown, so an OctoPrint .profile file must be trimmed.
type Profile struct {
	ID            string          `yaml:"id"`
	Name          string          `yaml:"name"`
	Model         string          `yaml:"model"`
	Volume        ProfileVolume   `yaml:"volume"`
	HeatedBed     bool            `yaml:"heatedBed"`
	HeatedChamber bool            `yaml:"heatedChamber"`
	Extruder      ProfileExtruder `yaml:"extruder"`
}

// ProfileVolume is the build volume in millimetres.
type ProfileVolume struct {
	Width      float64 `yaml:"width"`
	Depth      float64 `yaml:"depth"`
	Height     float64 `yaml:"height"`
	FormFactor string  `yaml:"formFactor"`
	Origin     string  `yaml:"origin"`
}

// ProfileExtruder describes the tool heads.
type ProfileExtruder struct {
	Count          int     `yaml:"count"`
	NozzleDiameter float64 `yaml:"nozzleDiameter"`
	SharedNozzle   bool    `yaml:"sharedNozzle"`
}

// DefaultProfile returns OctoPrint's built-in default profile (id
// "_default"): a 200 x 200 x 200 mm rectangular bed with its origin at the
// lower left, one extruder with a 0.4 mm nozzle, a heated bed and no
// heated chamber.
func DefaultProfile() Profile {
	return Profile{
		ID: "_default", Name: "Default", Model: "Generic RepRap Printer",
		Volume:    ProfileVolume{Width: 200, Depth: 200, Height: 200, FormFactor: "rectangular", Origin: "lowerleft"},
		HeatedBed: true,
		Extruder:  ProfileExtruder{Count: 1, NozzleDiameter: 0.4},
	}
}

// maxProfileExtruders is printbridge's bound on extruder.count, well above
// the 8 extruders Marlin supports.
const maxProfileExtruders = 10

// ParseProfile reads a profile from YAML. Keys left out keep the values
// of DefaultProfile; unknown keys are rejected, so a typo such as
// heatedbed does not silently keep the default.
func ParseProfile(data []byte) (Profile, error) {
	p := DefaultProfile()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		return Profile{}, profileDecodeError(err)
	}
	if err := p.Validate(); err != nil {
		return Profile{}, err
	}
	return p, nil
}

// profileDecodeError rewrites yaml.v3's type errors, which name Go types
// and span several lines, into one line in the profile's own terms.
func profileDecodeError(err error) error {
	var typeErr *yaml.TypeError
	if !errors.As(err, &typeErr) {
		return err
	}
	problems := make([]string, 0, len(typeErr.Errors))
	words := strings.NewReplacer(profileTypeWords...)
	for _, e := range typeErr.Errors {
		e = words.Replace(e)
		if line, rest, ok := strings.Cut(e, ": field "); ok {
			if field, _, ok := strings.Cut(rest, " not found"); ok {
				e = fmt.Sprintf("%s: unknown key %q", line, field)
			}
		}
		problems = append(problems, e)
	}
	return fmt.Errorf("invalid printer profile: %s; see the keys and types of OctoPrint's default profile", strings.Join(problems, "; "))
}

// profileTypeWords names the Go types of Profile's fields as YAML values,
// as old and new string pairs for strings.NewReplacer.
var profileTypeWords = []string{
	"cannot unmarshal", "cannot read",
	"into float64", "as a number", "into int", "as a whole number", "into bool", "as true or false",
	"into string", "as text", "!!str", "text", "!!seq", "a list", "!!map", "a mapping",
}

// Validate checks the values that the edge relies on.
func (p Profile) Validate() error {
	if p.ID == "" {
		return errors.New(`missing "id": give the profile an identifier, such as _default`)
	}
	if p.Extruder.Count < 1 || p.Extruder.Count > maxProfileExtruders {
		return fmt.Errorf("invalid extruder.count %d: give 1 to %d", p.Extruder.Count, maxProfileExtruders)
	}
	for name, v := range map[string]float64{"volume.width": p.Volume.Width, "volume.depth": p.Volume.Depth, "volume.height": p.Volume.Height} {
		if v <= 0 {
			return fmt.Errorf("invalid %s %g: give the build volume in millimetres, above 0", name, v)
		}
	}
	switch p.Volume.FormFactor {
	case "rectangular", "circular":
	default:
		return fmt.Errorf("invalid volume.formFactor %q: give rectangular or circular", p.Volume.FormFactor)
	}
	switch p.Volume.Origin {
	case "lowerleft", "center":
	default:
		return fmt.Errorf("invalid volume.origin %q: give lowerleft or center", p.Volume.Origin)
	}
	return nil
}

// LoadProfile reads a profile file; an empty path returns DefaultProfile.
func LoadProfile(path string) (Profile, error) {
	if path == "" {
		return DefaultProfile(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Profile{}, fmt.Errorf("read printer profile: %w", err)
	}
	p, err := ParseProfile(data)
	if err != nil {
		return Profile{}, fmt.Errorf("printer profile %s: %w", path, err)
	}
	return p, nil
}

// ProfileWatcher polls a profile file for changes. The content at
// NewProfileWatcher is the baseline, so a change made after it returns is
// reported even before Run starts.
type ProfileWatcher struct {
	path     string
	interval time.Duration
	log      *slog.Logger
	last     [sha256.Size]byte
}

// NewProfileWatcher records the file's current content as the baseline.
func NewProfileWatcher(path string, interval time.Duration, log *slog.Logger) *ProfileWatcher {
	return &ProfileWatcher{path: path, interval: interval, log: log, last: profileDigest(path)}
}

// Run polls every interval until ctx ends and calls onChange with the new
// profile when the content changed and is valid. A file that is invalid
// or missing is reported to onError once per distinct content, and the
// previous profile stays in use. An empty path or a zero interval returns
// at once.
func (w *ProfileWatcher) Run(ctx context.Context, onChange func(Profile), onError func(error)) {
	if w.path == "" || w.interval <= 0 {
		return
	}
	var lastFailed *[sha256.Size]byte
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		digest := profileDigest(w.path)
		if digest == w.last {
			continue
		}
		p, err := LoadProfile(w.path)
		if err != nil {
			if lastFailed == nil || digest != *lastFailed {
				lastFailed = &digest
				onError(err)
			}
			continue
		}
		w.last = digest
		lastFailed = nil
		w.log.Info("printer profile changed on disk", "path", w.path, "profile", p.ID)
		onChange(p)
	}
}

// profileDigest hashes the file's content, or returns the zero digest when
// it cannot be read. Content rather than the modification time is
// compared, so an editor that rewrites the same bytes fires nothing.
func profileDigest(path string) [sha256.Size]byte {
	data, err := os.ReadFile(path)
	if err != nil {
		return [sha256.Size]byte{}
	}
	return sha256.Sum256(data)
}
