package engine

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pheromone-go/pheromone/state"
)

// FormatVersion is the version of everything this engine persists: the
// state key layout (keys.go), bucket chunks, trigger state, table rows and
// the changelog records that replicate them. A change to any of them
// increments it, and the engine then reads every earlier version (migrating
// local state when it opens it, and changelog cycles as it applies them);
// it refuses a later one, naming it.
//
// The version is stored twice: in the data dir, under a local key per app
// (formatKey: not replicated), and in every changelog cycle's marker
// record ('m' + uvarint version + sequence number). Markers of version 1
// were written before markers carried it ('s' + sequence number).
const FormatVersion = 1

// changelogMarker is the record format of a marker with its version.
const changelogMarker = 'm'

func formatKey(app string) []byte { return append(appPrefix(app), 'v') }

// ErrFormat is wrapped by errors about a persisted format this binary does
// not read.
var ErrFormat = errors.New("engine: unknown persisted format")

// checkFormat reads the data dir's format version of the app: a later one
// than FormatVersion is refused; none (a new data dir, or one written
// before versions were recorded: version 1) is recorded as FormatVersion.
func checkFormat(st state.Store, app string) error {
	k := formatKey(app)
	v, err := st.Get(k)
	switch {
	case errors.Is(err, state.ErrNotFound):
		b := st.NewBatch()
		defer b.Close()
		b.Set(k, binary.AppendUvarint(nil, FormatVersion))
		return b.Commit(true)
	case err != nil:
		return err
	}
	ver, n := binary.Uvarint(v)
	if n <= 0 || n != len(v) {
		return fmt.Errorf("%w: the data dir's format version of app %q is unreadable (%x)", ErrFormat, app, v)
	}
	if ver > FormatVersion {
		return fmt.Errorf("%w: the data dir holds app %q's state in format version %d, and this binary reads versions up to %d: run a newer pheromone, or move the data dir away to restore the state from the changelog",
			ErrFormat, app, ver, FormatVersion)
	}
	return nil
}

// markerValue is the changelog value of a cycle's marker.
func markerValue(seq uint64) []byte {
	v := binary.AppendUvarint([]byte{changelogMarker}, FormatVersion)
	return binary.BigEndian.AppendUint64(v, seq)
}

// parseMarker returns the format version and sequence number of a marker
// record's value.
func parseMarker(v []byte) (version, seq uint64, err error) {
	switch {
	case len(v) == 9 && v[0] == changelogSet:
		return 1, binary.BigEndian.Uint64(v[1:]), nil
	case len(v) > 9 && v[0] == changelogMarker:
		ver, n := binary.Uvarint(v[1:])
		if n > 0 && len(v) == 1+n+8 {
			return ver, binary.BigEndian.Uint64(v[1+n:]), nil
		}
	}
	return 0, 0, fmt.Errorf("%w: a changelog marker %x", ErrFormat, v)
}
