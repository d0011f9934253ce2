package hooks

import (
	"path"
	"slices"
)

// remoteCopyOptions are the options of the file copy programs that run
// ssh: OpenSSH 9.2 scp and sftp, whose getopt stops at the first
// operand, and rsync 3.5.0, whose popt reads options after operands too
// and takes no abbreviated long names.
var remoteCopyOptions = map[string]cliOptions{
	"scp":  {value: "cDFiJloPSX"},
	"sftp": {value: "BbcDFiJloPRSsX"},
	"rsync": {value: "@BefMT", permute: true, valueLong: []string{
		"address", "backup-dir", "block-size", "bwlimit", "checksum-choice", "checksum-seed", "chmod", "chown",
		"compare-dest", "compress-choice", "compress-level", "compress-threads", "confine-root", "contimeout", "copy-as",
		"copy-dest", "debug", "early-input", "exclude", "exclude-from", "files-from", "filter", "groupmap", "iconv",
		"include", "include-from", "info", "link-dest", "log-file", "log-file-format", "max-alloc", "max-delete",
		"max-size", "min-size", "modify-window", "only-write-batch", "out-format", "outbuf", "partial-dir",
		"password-file", "port", "protocol", "read-batch", "remote-option", "rsh", "rsync-path", "skip-compress",
		"sockopts", "stderr", "stop-after", "stop-at", "suffix", "temp-dir", "timeout", "usermap", "write-batch"}},
}

const (
	fixRemotePath  = "copy into a fixed remote folder and let the file keep its local name, as in scp ./{path} host:/srv/prints/ or rsync ./{path} host:/srv/prints/"
	fixLocalPath   = "put a fixed / before the placeholder in the file's word, as in scp ./{path} host:/srv/prints/ or scp /srv/uploads/{path} host:/srv/prints/"
	fixCopyOptions = "write the options of the program as fixed text, without placeholders"
)

// remoteCopyField returns the first placeholder in the arguments of
// scp, sftp or rsync that can reach a shell or ssh. An operand with a :
// before any / is a remote path, whose text the login shell on the
// remote host parses in legacy scp (scp -O) and in rsync before 3.2.4
// or with --old-args. A value in a local operand can turn it into a
// remote one (host:file makes scp run ssh host) or into an option when
// it starts with -, unless a fixed / comes before it in its word. The
// destination of sftp is the destination of ssh. Options carry ssh
// options, programs to run (scp -S, rsync -e) and remote commands
// (rsync --rsync-path, sftp -s).
func remoteCopyField(words []string) *reparsedField {
	for i, w := range words {
		name := path.Base(w)
		spec, ok := remoteCopyOptions[name]
		if !ok {
			continue
		}
		_, operands := walkArguments(words, i, spec)
		for k := i + 1; k < len(words); k++ {
			f := firstField(words[k])
			if f == "" {
				continue
			}
			switch {
			case !slices.Contains(operands, k):
				return &reparsedField{f, "an option of " + name + ", whose values can be ssh options, a program to run (scp -S, rsync -e) or a command for the remote host (rsync --rsync-path, sftp -s)", fixCopyOptions}
			case name == "sftp":
				return &reparsedField{f, "the destination of sftp, which sftp hands to ssh, where a value that starts with - is an option such as -oProxyCommand=... that runs a local command", fixSSHArgs}
			case isRemoteOperand(words[k]):
				return &reparsedField{f, "a remote path of " + name + ", which the login shell on the remote host parses in legacy scp (scp -O) and in rsync before 3.2.4 or with --old-args", fixRemotePath}
			case !fixedSlashBefore(words[k]):
				return &reparsedField{f, "a local file of " + name + " without a fixed / before it, where a value such as host:file makes " + name + " copy from or to a host of the value's choosing over ssh, and a value that starts with - is an option", fixLocalPath}
			}
		}
	}
	return nil
}

// isRemoteOperand reports whether an operand of scp or rsync, written
// as a template, is a remote path: a fixed : comes before any / and
// before the first placeholder, as in host:{path} or rsync://host/x. scp
// reads a leading : as part of a local file name.
func isRemoteOperand(w string) bool {
	r := []rune(w)
	inField := fieldMask(r)
	for i, c := range r {
		switch {
		case inField[i] || c == '/':
			return false
		case c == ':':
			return i > 0
		}
	}
	return false
}

// fixedSlashBefore reports whether a fixed / comes before the first
// placeholder of a template word, as in ./{path} or /srv/{path}.
func fixedSlashBefore(w string) bool {
	r := []rune(w)
	inField := fieldMask(r)
	for i, c := range r {
		if inField[i] {
			return false
		}
		if c == '/' {
			return true
		}
	}
	return false
}

// remoteCopyProgramWords returns the indexes of the words that are the
// separate value of scp -S, sftp -S or rsync -e and --rsh, such as ssh
// in rsync -e ssh. remoteShellField skips them, because the operands of
// rsync after such a word are no ssh command.
func remoteCopyProgramWords(words []string) map[int]bool {
	skip := map[int]bool{}
	for i, w := range words {
		name := path.Base(w)
		spec, ok := remoteCopyOptions[name]
		if !ok {
			continue
		}
		options, _ := walkArguments(words, i, spec)
		for _, o := range options {
			if o.value > i && o.text == words[o.value] && (o.name == "S" && name != "rsync" || name == "rsync" && (o.name == "e" || o.name == "rsh")) {
				skip[o.value] = true
			}
		}
	}
	return skip
}
