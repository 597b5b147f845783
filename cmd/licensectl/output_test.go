package main

import "testing"

// YAML keeps each JSON value's type: a string that reads as a number, a
// boolean or null stays a string.
func TestJSONToYAML(t *testing.T) {
	got, err := jsonToYAML([]byte(`{"b":"123","a":123,"c":"yes","d":null,"e":[1,"x"],"f":"true","g":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := "b: \"123\"\na: 123\nc: yes\nd: null\ne:\n  - 1\n  - x\nf: \"true\"\ng: {}\n"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := jsonToYAML([]byte(`{"a":`)); err == nil {
		t.Error("a cut JSON body was turned into YAML")
	}
}
