package printer

import "strconv"

// Checksum returns the Marlin checksum of a line: the XOR of every byte.
func Checksum(s string) byte {
	var cs byte
	for i := 0; i < len(s); i++ {
		cs ^= s[i]
	}
	return cs
}

// FormatNumbered returns the wire form `N<n> <cmd>*<cs>` without the
// line feed. The checksum covers `N<n> <cmd>`, the space included.
func FormatNumbered(n int, cmd string) string {
	head := "N" + strconv.Itoa(n) + " " + cmd
	return head + "*" + strconv.Itoa(int(Checksum(head)))
}
