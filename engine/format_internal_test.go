package engine

import (
	"encoding/binary"
	"errors"
	"testing"
)

// TestMarkersOfEveryVersionParse: the markers written before they carried
// a version ('s' + sequence) are version 1; the versioned ones say theirs;
// anything else is a format error, not a guess.
func TestMarkersOfEveryVersionParse(t *testing.T) {
	legacy := binary.BigEndian.AppendUint64([]byte{changelogSet}, 42)
	if v, seq, err := parseMarker(legacy); err != nil || v != 1 || seq != 42 {
		t.Fatalf("legacy marker: %d %d %v", v, seq, err)
	}
	if v, seq, err := parseMarker(markerValue(7)); err != nil || v != FormatVersion || seq != 7 {
		t.Fatalf("current marker: %d %d %v", v, seq, err)
	}
	for _, bad := range [][]byte{nil, {'m'}, {'m', 1, 2}, {'s', 1}, append(markerValue(7), 0)} {
		if _, _, err := parseMarker(bad); !errors.Is(err, ErrFormat) {
			t.Errorf("marker %x: %v, want a format error", bad, err)
		}
	}
}
