package storage

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Errors that operations wrap, for callers that branch on the outcome
// (errors.Is).
var (
	// ErrInvalidPath is wrapped by every *PathError.
	ErrInvalidPath = errors.New("invalid path")
	// ErrNotFound means the file or folder, or the destination's parent
	// folder, does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists means the destination already exists.
	ErrExists = errors.New("already exists")
	// ErrBusy means the file, or a file in the folder, is in use by the
	// printer (Config.Busy returned true).
	ErrBusy = errors.New("in use by the printer")
)

// PathError is a path that breaks a rule of the storage.
type PathError struct {
	Path string
	// Rule is the broken rule and how to fix the path.
	Rule string
}

func (e *PathError) Error() string {
	return fmt.Sprintf("invalid path %q: %s", e.Path, e.Rule)
}

// Is makes errors.Is(err, ErrInvalidPath) true.
func (e *PathError) Is(target error) bool { return target == ErrInvalidPath }

// G-code file extensions the storage accepts, lower case.
var gcodeExtensions = []string{".gcode", ".gco", ".g"}

const (
	maxPathLength    = 4096
	maxElementLength = 255
)

// IsGcodeFile reports whether name has one of the G-code extensions
// .gcode, .gco or .g (in any case).
func IsGcodeFile(name string) bool {
	ext := strings.ToLower(path.Ext(name))
	for _, e := range gcodeExtensions {
		if ext == e {
			return true
		}
	}
	return false
}

// ValidatePath checks a storage path and returns it without a trailing
// slash. Paths are relative, use / as separator, and name no hidden
// entry, so that nothing outside the folder and nothing of the storage's
// own .printbridge folder can be reached. Errors are *PathError.
func ValidatePath(p string) (string, error) {
	bad := func(rule string) (string, error) { return "", &PathError{Path: p, Rule: rule} }
	switch {
	case p == "":
		return bad("the path is empty; name a file or folder relative to the files folder")
	case len(p) > maxPathLength:
		return bad(fmt.Sprintf("longer than %d bytes", maxPathLength))
	case strings.HasPrefix(p, "/"):
		return bad("absolute paths are not allowed; give the path relative to the files folder")
	case strings.Contains(p, "\\"):
		return bad(`backslashes are not allowed; separate folders with "/"`)
	case len(p) >= 2 && p[1] == ':':
		return bad("drive letters are not allowed; give the path relative to the files folder")
	}
	for i := 0; i < len(p); i++ {
		if p[i] == 0 {
			return bad("contains a NUL byte")
		}
		if p[i] < 0x20 || p[i] == 0x7f {
			return bad(fmt.Sprintf("contains the control character 0x%02x", p[i]))
		}
	}
	clean := strings.TrimSuffix(p, "/")
	for _, elem := range strings.Split(clean, "/") {
		switch {
		case elem == "":
			return bad(`contains an empty element ("//")`)
		case elem == "..":
			return bad(`".." is not allowed; paths stay inside the files folder`)
		case elem == ".":
			return bad(`"." is not allowed; give each folder by name`)
		case strings.HasPrefix(elem, "."):
			return bad(fmt.Sprintf("the name %q starts with a dot; hidden files and folders are not part of the storage", elem))
		case len(elem) > maxElementLength:
			return bad(fmt.Sprintf("the name %q is longer than %d bytes", elem[:32]+"...", maxElementLength))
		}
	}
	return clean, nil
}

// ValidateFilePath checks a file path like ValidatePath and also
// requires a G-code extension.
func ValidateFilePath(p string) (string, error) {
	clean, err := ValidatePath(p)
	if err != nil {
		return "", err
	}
	if strings.HasSuffix(p, "/") {
		return "", &PathError{Path: p, Rule: "a file path must not end with /"}
	}
	if !IsGcodeFile(clean) {
		return "", &PathError{Path: p, Rule: "only G-code files (.gcode, .gco, .g) can be stored"}
	}
	return clean, nil
}

// parentOf returns the folder of p, "" for the top level.
func parentOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// nameOf returns the last element of p.
func nameOf(p string) string {
	return p[strings.LastIndexByte(p, '/')+1:]
}

// within reports whether p is folder or inside it.
func within(p, folder string) bool {
	return p == folder || strings.HasPrefix(p, folder+"/")
}
