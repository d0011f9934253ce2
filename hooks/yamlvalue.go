package hooks

import (
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// pyKind is the Python type PyYAML builds for a YAML node. OctoPrint reads
// config.yaml with PyYAML, which resolves plain scalars by YAML 1.1 rules
// (yes, no, on and off are booleans, 1e5 is a string), where yaml.v3
// follows YAML 1.2; the loader therefore resolves scalars itself.
type pyKind int

const (
	pyNull pyKind = iota
	pyBool
	pyInt
	pyFloat
	pyStr
	pyList
	pyMap
)

func (k pyKind) String() string {
	return [...]string{"null", "a boolean", "an integer", "a float", "a string", "a list", "a mapping"}[k]
}

// pyValue is one resolved YAML node.
type pyValue struct {
	kind pyKind
	// text is the scalar as written, for messages and for str values.
	text string
	// truth is the value's Python truthiness.
	truth bool
	node  *yaml.Node
}

// PyYAML's implicit resolvers for YAML 1.1 (yaml/resolver.py).
var (
	yamlBool  = regexp.MustCompile(`^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$`)
	yamlInt   = regexp.MustCompile(`^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$`)
	yamlFloat = regexp.MustCompile(`^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$`)
	yamlNull  = regexp.MustCompile(`^(?:~|null|Null|NULL|)$`)
)

// deref follows aliases to the anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func resolve(n *yaml.Node) pyValue {
	n = deref(n)
	if n == nil {
		return pyValue{kind: pyNull}
	}
	switch n.Kind {
	case yaml.SequenceNode:
		return pyValue{kind: pyList, truth: len(n.Content) > 0, node: n}
	case yaml.MappingNode:
		return pyValue{kind: pyMap, truth: len(n.Content) > 0, node: n}
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return pyValue{kind: pyNull}
		}
		return resolve(n.Content[0])
	}
	v := pyValue{text: n.Value, node: n}
	v.kind = scalarKind(n)
	switch v.kind {
	case pyStr:
		v.truth = n.Value != ""
	case pyBool:
		v.truth = strings.EqualFold(n.Value, "true") || strings.EqualFold(n.Value, "yes") || strings.EqualFold(n.Value, "on")
	case pyInt, pyFloat:
		v.truth = !isYAMLZero(n.Value)
	}
	return v
}

func scalarKind(n *yaml.Node) pyKind {
	if n.Style&yaml.TaggedStyle != 0 {
		switch n.Tag {
		case "!!str":
			return pyStr
		case "!!bool":
			return pyBool
		case "!!int":
			return pyInt
		case "!!float":
			return pyFloat
		case "!!null":
			return pyNull
		}
		return pyStr
	}
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return pyStr
	}
	switch s := n.Value; {
	case yamlNull.MatchString(s):
		return pyNull
	case yamlBool.MatchString(s):
		return pyBool
	case yamlInt.MatchString(s):
		return pyInt
	case yamlFloat.MatchString(s):
		return pyFloat
	}
	return pyStr
}

// isYAMLZero reports whether an int or float scalar is zero, for Python's
// truthiness of `enabled: 0` or `enabled: 0.0`.
func isYAMLZero(s string) bool {
	s = strings.ReplaceAll(strings.TrimLeft(s, "+-"), "_", "")
	lower := strings.ToLower(s)
	if strings.Contains(lower, "inf") || strings.Contains(lower, "nan") {
		return false
	}
	if strings.HasPrefix(lower, "0x") || strings.HasPrefix(lower, "0b") {
		return strings.Trim(lower[2:], "0") == ""
	}
	if strings.Contains(s, ":") {
		return strings.Trim(s, "0:.") == ""
	}
	f, err := strconv.ParseFloat(s, 64)
	return err == nil && f == 0
}

// yamlPair is one key and value of a mapping.
type yamlPair struct {
	key   *yaml.Node
	value *yaml.Node
}

// mappingPairs returns the pairs of a mapping in file order with PyYAML's
// merge keys (<<) expanded; keys written in the mapping itself win over
// merged ones.
func mappingPairs(n *yaml.Node) []yamlPair {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	var merged, own []yamlPair
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, value := n.Content[i], n.Content[i+1]
		if key.Kind == yaml.ScalarNode && key.Value == "<<" && key.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
			value = deref(value)
			switch value.Kind {
			case yaml.MappingNode:
				merged = append(merged, mappingPairs(value)...)
			case yaml.SequenceNode:
				for _, m := range value.Content {
					merged = append(merged, mappingPairs(m)...)
				}
			}
			continue
		}
		own = append(own, yamlPair{key: key, value: value})
	}
	if len(merged) == 0 {
		return own
	}
	seen := map[string]bool{}
	for _, p := range own {
		seen[p.key.Value] = true
	}
	var out []yamlPair
	for _, p := range merged {
		if !seen[p.key.Value] {
			out = append(out, p)
			seen[p.key.Value] = true
		}
	}
	return append(out, own...)
}
