package gcode

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/bits"
)

// maxParam bounds parameter values: a coordinate or feed rate beyond
// a billion is garbage, and dropping it keeps every later sum finite.
const maxParam = 1e9

// command is one G-code line split into its command word and parameters.
// It is reused for every line, so parsing allocates nothing.
type command struct {
	// letter is 'G', 'M' or 'T', or 0 when the line has no command word.
	letter byte
	// code is the number of the command word: 1 for G1, 862 for M862.3.
	code int
	// sub is the part after the dot (3 for M862.3), or -1.
	sub int
	// has is a bit set of the parameter letters present, bit 0 for A.
	has uint32
	// params holds the value of each present letter; a letter given
	// without a number (G28 X) is present with the value 0.
	params [26]float64
	// extended is the name of a Klipper-style command such as
	// SET_VELOCITY_LIMIT, whose parameters are KEY=VALUE words in args.
	extended []byte
	args     []byte
}

func (c *command) reset() {
	c.letter, c.code, c.sub, c.has = 0, 0, -1, 0
	c.extended, c.args = nil, nil
}

// param returns the value of a parameter letter and whether it is
// present.
func (c *command) param(letter byte) (float64, bool) {
	i := letter - 'A'
	if c.has&(1<<i) == 0 {
		return 0, false
	}
	return c.params[i], true
}

func (c *command) present(letter byte) bool {
	return c.has&(1<<(letter-'A')) != 0
}

// parseCommand reads the code part of a line (comment removed) into c.
// It understands line numbers (N123), checksums (*71), lower-case letters
// and Klipper's extended commands; it reports false when the line holds
// no command.
//
// A checksum ends the command. The regular path stops at the '*' where it
// meets it, which spares every line a scan for one. parseExtended cuts
// the line there first.
func parseCommand(code []byte, c *command) bool {
	c.reset()
	i := skipSpace(code, 0)
	if i < len(code) && upper(code[i]) == 'N' && i+1 < len(code) && isDigit(code[i+1]) {
		i++
		for i < len(code) && isDigit(code[i]) {
			i++
		}
		i = skipSpace(code, i)
	}
	if i >= len(code) {
		return false
	}

	// A regular command word is a letter and digits, and a Klipper-style
	// word starts with two letters. Testing the second byte first spares
	// nearly every line the call of isExtendedWord.
	letter := upper(code[i])
	if i+1 >= len(code) || !isDigit(code[i+1]) {
		return parseExtended(code, i, c)
	}
	if letter != 'G' && letter != 'M' && letter != 'T' {
		return false
	}
	n, j := readInt(code, i+1)
	c.letter, c.code = letter, n
	if j < len(code) && code[j] == '.' {
		sub, after := readInt(code, j+1)
		if after > j+1 {
			c.sub = sub
			j = after
		}
	}

	if letter == 'M' && takesText(n) {
		return true
	}
	parseParams(code[j:], c)
	return true
}

// parseExtended reads the Klipper-style command that starts at code[i],
// up to a checksum.
func parseExtended(code []byte, i int, c *command) bool {
	if k := bytes.IndexByte(code, '*'); k >= 0 {
		code = code[:k]
	}
	if i >= len(code) || !isExtendedWord(code[i:]) {
		return false
	}
	end := i
	for end < len(code) && !isSpace(code[end]) {
		end++
	}
	c.extended = code[i:end]
	c.args = code[end:]
	return true
}

// takesText reports M-codes whose argument is free text (M117 message,
// M23 file name, ...), which must not be read as parameters.
func takesText(code int) bool {
	switch code {
	case 23, 28, 30, 32, 33, 117, 118, 928:
		return true
	}
	return false
}

func parseParams(b []byte, c *command) {
	i := 0
	for i < len(b) {
		ch := b[i]
		if ch == ' ' {
			// The separator between words, tested first because it is
			// the most frequent byte here.
			i++
			continue
		}
		if ch == '*' {
			// The checksum ends the parameters.
			return
		}
		if ch == '"' {
			// A quoted string (M862.3 P "MK4S") holds no parameters. It
			// ends at its closing quote, unless a checksum comes first.
			end := bytes.IndexByte(b[i+1:], '"')
			if end < 0 || bytes.IndexByte(b[i+1:i+1+end], '*') >= 0 {
				return
			}
			i += end + 2
			continue
		}
		ch = upper(ch)
		i++
		if ch < 'A' || ch > 'Z' {
			continue
		}
		v, end := scanNumber(b, i)
		bit := uint32(1) << (ch - 'A')
		if end > i {
			i = end
			if math.Abs(v) <= maxParam {
				c.has |= bit
				c.params[ch-'A'] = v
			}
			continue
		}
		// A letter with no number, such as the axes of G28 X Y.
		if i >= len(b) || isSpace(b[i]) || b[i] == '*' {
			c.has |= bit
			c.params[ch-'A'] = 0
		}
	}
}

// extendedParam returns the number given as KEY=VALUE in a Klipper-style
// command's arguments.
func (c *command) extendedParam(key string) (float64, bool) {
	args := c.args
	for len(args) > 0 {
		i := skipSpace(args, 0)
		args = args[i:]
		end := 0
		for end < len(args) && !isSpace(args[end]) {
			end++
		}
		word := args[:end]
		args = args[end:]
		eq := bytes.IndexByte(word, '=')
		if eq <= 0 || !equalFoldASCII(word[:eq], key) {
			continue
		}
		v, n, ok := parseNumber(word[eq+1:])
		if ok && n == len(word)-eq-1 && math.Abs(v) <= maxParam {
			return v, true
		}
		return 0, false
	}
	return 0, false
}

// isExtendedWord reports a Klipper-style command word: letters, digits
// and underscores, at least one underscore or two leading letters, so
// that G1 and M104 are not taken for one.
func isExtendedWord(b []byte) bool {
	if len(b) < 2 || !isLetter(b[0]) || !isLetter(b[1]) {
		return false
	}
	for _, ch := range b {
		if isSpace(ch) {
			break
		}
		if !isLetter(ch) && !isDigit(ch) && ch != '_' {
			return false
		}
	}
	return true
}

// parseNumber reads a decimal number (sign, digits, point) at the start
// of b without allocating. It returns the value, the bytes used and
// whether a number was there. An E ends the number, as in Marlin's
// parser, because X10E5 means X10 E5 in G-code, never 10e5.
func parseNumber(b []byte) (float64, int, bool) {
	v, end := scanNumber(b, 0)
	return v, end, end > 0
}

// scanNumber reads the number that parseNumber reads at b[i:] and
// returns its value and the index after it, or i when none starts there.
// Taking the index spares the parameter loop a new slice per number.
//
// Numbers of up to seven digits before the point and seven after it,
// such as 123.456, .0158 or 1234.56789, the usual form of numbers in
// slicer output, are read here. It finds the ends of the digit runs in a
// uint64 of eight bytes, without a branch per digit, whose outcome at
// the end of each run a CPU mispredicts. When it cannot decide (fewer
// than eight bytes in b's capacity, or a run that does not end within
// its eight bytes and len(b)), scanLongerNumber reads the number.
// Reading the short numbers here, not in a function of their own,
// spares a call per number, about 2% of the analysis of the arcs test
// file.
//
// The eight bytes may extend past len(b) into b's capacity, which the
// slice may read but which is not part of the line. A number that would
// run on past len(b) there goes to scanLongerNumber, which stops at
// len(b).
func scanNumber(b []byte, i int) (float64, int) {
	first := i
	neg := false
	if i < len(b) && (b[i] == '-' || b[i] == '+') {
		neg = b[i] == '-'
		i++
	}

	if cap(b)-i < 8 {
		return scanLongerNumber(b, first, i, neg)
	}
	avail := len(b) - i
	word := binary.LittleEndian.Uint64(b[i:cap(b)])
	// XOR maps the bytes '0' to '9' to 0 to 9, and every other byte to
	// 10 or more. Adding 0x76 to the low seven bits sets the top bit of
	// each byte of 10 or more without a carry into the next byte, and
	// the OR adds the bytes whose own top bit was set.
	values := word ^ bytesOf0x30
	nonDigits := ((values & bytesOf0x7f) + bytesOf0x76 | values) & bytesOf0x80
	// The shift counts are masked to 63, which they never exceed here,
	// so the compiler leaves out its test for larger ones.
	intDigits := bits.TrailingZeros64(nonDigits) >> 3
	if intDigits >= 8 || intDigits > avail {
		return scanLongerNumber(b, first, i, neg)
	}
	if intDigits == avail || byte(word>>(intDigits*8&63)) != '.' {
		if intDigits == 0 {
			return 0, first
		}
		return numberValue(parseDigitWord(values, intDigits), 0, neg), i + intDigits
	}
	// The digits after the point end at the next non-digit. They are
	// moved down by one byte, over the point.
	after := bits.TrailingZeros64(nonDigits&^(0x80<<(intDigits*8&63))) >> 3
	if after > avail {
		return scanLongerNumber(b, first, i, neg)
	}
	if after < 8 {
		if after == 1 {
			// A point without digits.
			return 0, first
		}
		low := uint64(1)<<(intDigits*8&63) - 1
		values = values&low | values>>8&^low
		return numberValue(parseDigitWord(values, after-1), after-intDigits-1, neg), i + after
	}

	// The digits after the point run past the eight bytes, as in Cura's
	// absolute E values (E1234.56789). They are read from the eight bytes
	// that start after the point.
	start := i + intDigits + 1
	if cap(b)-start < 8 {
		return scanLongerNumber(b, first, i, neg)
	}
	fractionValues := binary.LittleEndian.Uint64(b[start:cap(b)]) ^ bytesOf0x30
	fractionNonDigits := ((fractionValues & bytesOf0x7f) + bytesOf0x76 | fractionValues) & bytesOf0x80
	fraction := bits.TrailingZeros64(fractionNonDigits) >> 3
	if fraction >= 8 || fraction > len(b)-start {
		return scanLongerNumber(b, first, i, neg)
	}
	if intDigits+fraction == 0 {
		return 0, first
	}
	mant := parseDigitWord(values, intDigits)*pow10Int[fraction] + parseDigitWord(fractionValues, fraction)
	return numberValue(mant, fraction, neg), start + fraction
}

// numberValue is mant over 10^fraction, negated when neg: fraction is
// at most 18, so pow10Table holds its power.
func numberValue(mant int64, fraction int, neg bool) float64 {
	v := float64(mant)
	if fraction > 0 {
		v /= pow10Table[fraction]
	}
	if neg {
		v = -v
	}
	return v
}

// scanLongerNumber is scanNumber for a number that its eight-byte path
// cannot read, whose digits start at b[i:] after an optional sign at
// b[first]. Numbers of up to 18 digits, which is every number a slicer
// writes, take one pass: their digits fit in an int64, so the value is
// that integer over a power of ten, the same two roundings as
// parseLongNumber. Longer numbers are parsed again by parseLongNumber.
func scanLongerNumber(b []byte, first, i int, neg bool) (float64, int) {
	mant, digits, fraction, end := scanDigits(b, i)
	if digits == 0 {
		return 0, first
	}
	if digits > 18 {
		v, used, _ := parseLongNumber(b[first:])
		return v, first + used
	}
	return numberValue(mant, fraction, neg), end
}

// scanDigits reads digits, an optional point and more digits at b[i:],
// one byte at a time. It returns the digits as an integer, their count,
// how many of them follow the point, and the index after them. More
// than 18 digits may overflow the int64, but scanNumber parses such
// numbers again.
func scanDigits(b []byte, i int) (mant int64, digits, fraction, end int) {
	start := i
	for i < len(b) {
		d := b[i] - '0'
		if d > 9 {
			break
		}
		mant = mant*10 + int64(d)
		i++
	}
	digits = i - start
	if i < len(b) && b[i] == '.' {
		i++
		fractionStart := i
		for i < len(b) {
			d := b[i] - '0'
			if d > 9 {
				break
			}
			mant = mant*10 + int64(d)
			i++
		}
		fraction = i - fractionStart
		digits += fraction
	}
	return mant, digits, fraction, i
}

// Masks for scanNumber, one byte repeated eight times.
const (
	bytesOf0x30 = 0x3030303030303030
	bytesOf0x76 = 0x7676767676767676
	bytesOf0x7f = 0x7f7f7f7f7f7f7f7f
	bytesOf0x80 = 0x8080808080808080
)

// pow10Int contains the powers of ten that scanNumber scales by.
var pow10Int = [8]int64{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000}

// parseDigitWord returns the integer of the first n (at most 7) digit
// values in the bytes of values, the first digit in the lowest byte.
// The shift drops the other bytes and leaves zeros, as leading zero
// digits, in front. The multiplications then combine neighbouring digits
// into pairs, the pairs into quadruples and those into one number.
func parseDigitWord(values uint64, n int) int64 {
	if n == 0 {
		return 0
	}
	v := values << ((64 - 8*n) & 63)
	v = v*10 + v>>8
	v = ((v&0x000000FF000000FF)*(100+1000000<<32) + (v>>16&0x000000FF000000FF)*(1+10000<<32)) >> 32
	return int64(uint32(v))
}

// parseLongNumber is parseNumber for any number of digits: it keeps the
// first 18 significant digits and scales by the power of ten that the
// dropped ones stood for.
func parseLongNumber(b []byte) (float64, int, bool) {
	i := 0
	neg := false
	if i < len(b) && (b[i] == '-' || b[i] == '+') {
		neg = b[i] == '-'
		i++
	}

	var mant uint64
	digits, scale := 0, 0
	start := i
	for i < len(b) && isDigit(b[i]) {
		if digits < 18 {
			mant = mant*10 + uint64(b[i]-'0')
			if mant != 0 {
				digits++
			}
		} else {
			scale++
		}
		i++
	}
	if i < len(b) && b[i] == '.' {
		i++
		for i < len(b) && isDigit(b[i]) {
			if digits < 18 {
				mant = mant*10 + uint64(b[i]-'0')
				if mant != 0 {
					digits++
				}
				scale--
			}
			i++
		}
	}
	if i == start || (i == start+1 && b[start] == '.') {
		return 0, 0, false
	}

	v := float64(mant)
	switch {
	case mant == 0:
		v = 0
	case scale > 0:
		v *= pow10(scale)
	case scale < 0:
		v /= pow10(-scale)
	}
	if neg {
		v = -v
	}
	return v, i, true
}

// pow10Table contains the powers of ten that float64 represents exactly, so
// pow10 returns what math.Pow10 returns, without its call and range
// checks for the scales of ordinary G-code numbers.
var pow10Table = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

func pow10(n int) float64 {
	if n < len(pow10Table) {
		return pow10Table[n]
	}
	return math.Pow10(n)
}

func readInt(b []byte, i int) (int, int) {
	n := 0
	for i < len(b) && isDigit(b[i]) {
		if n < 1<<30 {
			n = n*10 + int(b[i]-'0')
		}
		i++
	}
	return n, i
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

func isSpace(ch byte) bool { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' }
func isDigit(ch byte) bool { return ch >= '0' && ch <= '9' }
func isLetter(ch byte) bool {
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')
}

func upper(ch byte) byte {
	if ch >= 'a' && ch <= 'z' {
		return ch - 'a' + 'A'
	}
	return ch
}

func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if upper(b[i]) != upper(s[i]) {
			return false
		}
	}
	return true
}
