package main

import (
	"bytes"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
)

// writeBody prints an answer's JSON body: as is with --output json, ending
// in a newline, or as YAML with --output yaml, members in the API's order.
func (c *cli) writeBody(body []byte) error {
	if !c.yaml || len(bytes.TrimSpace(body)) == 0 {
		_, err := c.stdout.Write(body)
		if err == nil && (len(body) == 0 || body[len(body)-1] != '\n') {
			_, err = io.WriteString(c.stdout, "\n")
		}
		return err
	}
	out, err := jsonToYAML(body)
	if err != nil {
		return err
	}
	_, err = c.stdout.Write(out)
	return err
}

// jsonToYAML re-encodes a JSON document as block-style YAML. JSON is YAML
// already; only its styles are dropped, so that the encoder chooses plain,
// quoted or block forms as YAML readers expect, keeping every value's type.
func jsonToYAML(body []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("the API answered something that is not JSON (%w); --output json shows it as is", err)
	}
	var plain func(n *yaml.Node)
	plain = func(n *yaml.Node) {
		n.Style = 0
		for _, k := range n.Content {
			plain(k)
		}
	}
	plain(&doc)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	return b.Bytes(), nil
}
