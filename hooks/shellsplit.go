package hooks

import "strings"

// shellCommand is one simple command of shell code. pipe is true when
// its output goes into the next command through |.
type shellCommand struct {
	words []string
	pipe  bool
	// expands marks the words that contain a $ or backtick expansion
	// outside single quotes, whose text is known only when the code runs.
	expands []bool
	// substituted is true when a $(...) or backtick command substitution
	// ends the command, as in eval $(cat), so its last word is not known.
	substituted bool
	// redirects holds for each word the redirection operator before it,
	// such as <, >> or <<<, or "" for a word that is an argument.
	redirects []string
	// continued is true when the words are no new command: the rest of
	// an enclosing command after a ) or a closing backtick, as {name} in
	// echo $(date) {name}, the elements of an array assignment a=(...),
	// or the expression of $((...)).
	continued bool
}

// arguments returns c without the targets of its redirections.
func (c shellCommand) arguments() shellCommand {
	out := c
	out.words, out.expands, out.redirects = nil, nil, nil
	for i, w := range c.words {
		if c.redirects[i] == "" {
			out.words = append(out.words, w)
			out.expands = append(out.expands, c.expands[i])
			out.redirects = append(out.redirects, "")
		}
	}
	return out
}

// shellCommands splits shell code into the words of its simple commands,
// with quotes and backslashes removed, for finding the program that gets
// a word. See splitShellCommands.
func shellCommands(code string) [][]string {
	var commands [][]string
	for _, c := range splitShellCommands(code) {
		commands = append(commands, c.words)
	}
	return commands
}

// shellSplitter is the state of splitShellCommands.
type shellSplitter struct {
	commands []shellCommand
	// cur is the command being read, word the word being read.
	cur                 shellCommand
	word                []rune
	inWord, wordExpands bool
	// wordRedirect is the redirection operator before the current word,
	// and pending one whose target word has not started yet.
	wordRedirect, pending string
	// continued is true when the next command is no new command.
	continued bool
}

// add appends c to the current word, starting a word if none is open.
func (s *shellSplitter) add(c rune) {
	s.startWord()
	s.word = append(s.word, c)
}

func (s *shellSplitter) startWord() {
	if !s.inWord {
		s.inWord = true
		s.wordRedirect, s.pending = s.pending, ""
	}
}

func (s *shellSplitter) endWord() {
	if !s.inWord {
		return
	}
	s.cur.words = append(s.cur.words, string(s.word))
	s.cur.expands = append(s.cur.expands, s.wordExpands)
	s.cur.redirects = append(s.cur.redirects, s.wordRedirect)
	s.word = s.word[:0]
	s.inWord, s.wordExpands, s.wordRedirect = false, false, ""
}

// endCommand ends the current command. With continued, the words after
// the operator that ends it continue an enclosing command.
func (s *shellSplitter) endCommand(pipe, continued bool) {
	s.endWord()
	if len(s.cur.words) > 0 {
		s.cur.pipe = pipe
		s.commands = append(s.commands, s.cur)
	} else if pipe && len(s.commands) > 0 {
		s.commands[len(s.commands)-1].pipe = true
	}
	s.cur = shellCommand{continued: continued}
	s.pending = ""
}

// splitShellCommands splits shell code into its simple commands. It
// splits at unquoted ; & | ( ) ` $( and line breaks and drops the
// operators, and it keeps replacement fields whole. Redirection targets
// stay words of the command, marked in redirects, and an IO number such
// as the 2 of 2>&1 is dropped. Commands inside double quotes are not
// split out: a placeholder there is already an error of
// unsafePlaceholder. A | after a ) marks the command before the ) as
// piped, as in $(printf %s {name}) | sh.
func splitShellCommands(code string) []shellCommand {
	r := []rune(code)
	inField := fieldMask(r)
	s := &shellSplitter{}
	inBacktick := false
	for i := 0; i < len(r); i++ {
		c := r[i]
		if inField[i] {
			s.add(c)
			continue
		}
		switch c {
		case ' ', '\t':
			s.endWord()
		case '<', '>':
			if i+1 < len(r) && r[i+1] == '(' {
				// A process substitution: the ( starts its command.
				s.endWord()
				continue
			}
			if s.inWord && s.wordRedirect == "" && isIONumber(s.word) {
				s.word, s.inWord, s.wordExpands = s.word[:0], false, false
			}
			s.endWord()
			end := redirectionEnd(r, i)
			s.pending = string(r[i:end])
			i = end - 1
		case '|':
			switch {
			case i+1 < len(r) && r[i+1] == '|':
				s.endCommand(false, false)
				i++
			case i+1 < len(r) && r[i+1] == '&':
				s.endCommand(true, false)
				i++
			default:
				s.endCommand(true, false)
			}
		case '`':
			s.cur.substituted = true
			// The word after a closing backtick continues the command
			// that holds the substitution.
			s.endCommand(false, inBacktick)
			inBacktick = !inBacktick
		case '&':
			if i+1 < len(r) && r[i+1] == '>' {
				// &> and &>> redirect standard output and error.
				s.endWord()
				end := redirectionEnd(r, i+1)
				s.pending = string(r[i:end])
				i = end - 1
				continue
			}
			s.endCommand(false, false)
		case '\n', ';':
			s.endCommand(false, false)
		case '(':
			// The elements of a=(...) are no command.
			array := i > 0 && r[i-1] == '=' && !inField[i-1]
			s.endCommand(false, array)
		case ')':
			s.endCommand(false, true)
		case '\\':
			if i+1 < len(r) {
				i++
				if r[i] != '\n' {
					s.add(r[i])
				}
			}
		case '\'':
			s.startWord()
			for i++; i < len(r) && r[i] != '\''; i++ {
				s.word = append(s.word, r[i])
			}
		case '"':
			s.startWord()
			for i++; i < len(r) && r[i] != '"'; i++ {
				if r[i] == '\\' && i+1 < len(r) && strings.ContainsRune("\\\"$`", r[i+1]) {
					i++
				} else if r[i] == '$' || r[i] == '`' {
					s.wordExpands = true
				}
				s.word = append(s.word, r[i])
			}
		case '$':
			if i+1 < len(r) && r[i+1] == '(' {
				s.cur.substituted = true
				// $((...)) holds an arithmetic expression, no command.
				arithmetic := i+2 < len(r) && r[i+2] == '('
				s.endCommand(false, arithmetic)
				i++
				if arithmetic {
					i++
				}
				continue
			}
			s.add(c)
			s.wordExpands = true
		default:
			s.add(c)
		}
	}
	s.endCommand(false, false)
	return s.commands
}

// redirectionEnd returns the index after the redirection operator that
// starts at r[i]: one of < << <<- <<< <& <> > >> >& >|.
func redirectionEnd(r []rune, i int) int {
	j := i + 1
	if j >= len(r) {
		return j
	}
	switch {
	case r[i] == '<' && r[j] == '<':
		j++
		if j < len(r) && (r[j] == '<' || r[j] == '-') {
			j++
		}
	case r[i] == '<' && (r[j] == '&' || r[j] == '>'):
		j++
	case r[i] == '>' && (r[j] == '>' || r[j] == '&' || r[j] == '|'):
		j++
	}
	return j
}

// isIONumber reports whether a word read so far is the file descriptor
// number of a redirection, as 2 in 2>&1.
func isIONumber(word []rune) bool {
	for _, c := range word {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(word) > 0
}
