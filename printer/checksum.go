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
	// N, up to 20 digits, a space, the command, * and 3 digits.
	return string(AppendNumbered(make([]byte, 0, len(cmd)+26), n, cmd))
}

// AppendNumbered appends the wire form of FormatNumbered to dst, so the
// sender can reuse one buffer for every line of a print.
func AppendNumbered(dst []byte, n int, cmd string) []byte {
	start := len(dst)
	dst = append(dst, 'N')
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, ' ')
	dst = append(dst, cmd...)
	var cs byte
	for _, c := range dst[start:] {
		cs ^= c
	}
	dst = append(dst, '*')
	return strconv.AppendUint(dst, uint64(cs), 10)
}

// numberedLength returns len(FormatNumbered(n, cmd)) without building the
// line, because the sender and the file check measure every line against
// the firmware's maximum before sending it.
func numberedLength[T ~string | ~[]byte](n int, cmd T) int {
	var buf [20]byte
	number := strconv.AppendInt(buf[:0], int64(n), 10)
	cs := byte('N') ^ ' '
	for _, c := range number {
		cs ^= c
	}
	for i := 0; i < len(cmd); i++ {
		cs ^= cmd[i]
	}
	csDigits := 1
	if cs >= 100 {
		csDigits = 3
	} else if cs >= 10 {
		csDigits = 2
	}
	// N, the number, a space, the command, * and the checksum.
	return 1 + len(number) + 1 + len(cmd) + 1 + csDigits
}
