package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"testing"
)

// TestOversizeDeadLetterIsCut: a dead letter its topic would refuse (a
// 5 MB input over max_record_bytes was dead-lettered whole, refused, and the
// node exited) is cut to the limit, saying so with the original's size and
// SHA-256; one that fits is left alone.
func TestOversizeDeadLetterIsCut(t *testing.T) {
	value := bytes.Repeat([]byte("v"), 5<<20)
	r := &OutRecord{Key: []byte("k"), Value: value, Headers: []Header{{HeaderReason, []byte(ReasonTooLarge)}}}
	fitDeadLetter(r, DefaultRecordLimit)
	if n := outSize(r); n > DefaultRecordLimit {
		t.Fatalf("cut dead letter weighs %d > %d", n, DefaultRecordLimit)
	}
	sum := sha256.Sum256(value)
	for k, want := range map[string]string{
		HeaderTruncated:      "true",
		HeaderOriginalSize:   strconv.Itoa(len(value)),
		HeaderOriginalSHA256: hex.EncodeToString(sum[:]),
	} {
		if got := string(r.header(k)); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if !bytes.HasPrefix(value, r.Value) || len(r.Value) < DefaultRecordLimit-1024 {
		t.Errorf("kept %d bytes of the value", len(r.Value))
	}
	small := &OutRecord{Value: []byte("ok")}
	fitDeadLetter(small, DefaultRecordLimit)
	if string(small.Value) != "ok" || len(small.Headers) != 0 {
		t.Errorf("a dead letter that fits was changed: %+v", small)
	}
}
