package gcode

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestIndexKeySeparatorMatchesIndexAny(t *testing.T) {
	inputs := []string{"", ":", "=", ",", "TYPE:Perimeter", " key = value", "a,b:c=d", "x=1:2", "LAYER_CHANGE",
		"SURFQSAtIFBSSU5UREFUQUlZDHzi6E17riyBkcQfrme581s3AUB8PzBJ6dVtSnsUqYtjPcSjxX3ePWE", "a=b,c", "a,b=c"}
	rng := rand.New(rand.NewPCG(7, 8))
	const alphabet = "ab :=,\t"
	for range 100000 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		inputs = append(inputs, string(b))
	}
	for _, in := range inputs {
		if got, want := indexKeySeparator([]byte(in)), bytes.IndexAny([]byte(in), ":=,"); got != want {
			t.Fatalf("indexKeySeparator(%q) = %d, bytes.IndexAny = %d", in, got, want)
		}
	}
}

func TestKeyShapesContainEveryKey(t *testing.T) {
	for key := range slicerKeys.Get() {
		if !slicerKeyShapes.Get().contains([]byte(key)) {
			t.Errorf("slicerKeyShapes rejects the slicer key %q", key)
		}
	}
	for _, key := range []string{"", "TYPE", "WIDTH", "HEIGHT", "Z", "LAYER"} {
		if slicerKeyShapes.Get().contains([]byte(key)) {
			t.Errorf("slicerKeyShapes accepts %q, which no slicer key matches in length and second byte", key)
		}
	}
}
