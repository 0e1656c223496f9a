// Package codec converts between Kafka record payloads and Arrow record
// batches: a JSON decoder that appends flat JSON objects straight into
// reserved column buffers, and a JSON encoder for sinks.
//
// The decoder is written for the hot path: it scans each object once, keeps
// per-column positions in reused scratch space and appends a row only once
// the whole object has checked out, so a bad record never leaves a partial
// row behind. It does not allocate per record.
package codec

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
)

// DecodeError says why one record could not be decoded. Column is empty when
// the problem is not tied to one column.
type DecodeError struct {
	Column string
	Msg    string
}

func (e *DecodeError) Error() string {
	if e.Column == "" {
		return "codec: " + e.Msg
	}
	return fmt.Sprintf("codec: column %q: %s", e.Column, e.Msg)
}

type valKind uint8

const (
	vMissing valKind = iota
	vNull
	vString
	vNumber
	vTrue
	vFalse
	vNested
)

type slot struct {
	kind    valKind
	start   int // raw value bounds in the input (string: without quotes)
	end     int
	escaped bool
	high    bool // a byte >= 0x80: not ASCII, so UTF-8 is checked
}

// JSONDecoder decodes flat JSON objects into rows of a fixed schema. It is
// not safe for concurrent use; each partition task owns one.
type JSONDecoder struct {
	schema *arrow.Schema
	names  map[string]int
	// order is the column (or -1: not in the schema) of each field position
	// of the last object, with its name: producers write fields in one
	// order, so a name equal to the one at its position last time needs no
	// map lookup.
	order    []orderedField
	types    []arrow.Type
	required []bool
	cols     []column
	slots    []slot
	discard  slot
	ints     []int64
	floats   []float64
	bins     [][]byte // decoded base64 of bytes columns, per column, until appended
	scratch  []byte
	keyBuf   []byte
	rows     int
	// dataBytes is how many string/binary bytes each column held in the
	// last record, per row, to reserve value buffers up front.
	dataPerRow []float64
	// external is the column (or -1) whose value comes from outside the
	// JSON document (a Kafka header), passed to AppendWith.
	external int
	extBuf   []byte
}

// NewJSONDecoder builds a decoder for schema. Columns listed in required
// must be present and non-null in every record.
func NewJSONDecoder(schema *arrow.Schema, required ...string) (*JSONDecoder, error) {
	d := &JSONDecoder{
		schema:     schema,
		names:      make(map[string]int, schema.NumFields()),
		types:      make([]arrow.Type, schema.NumFields()),
		required:   make([]bool, schema.NumFields()),
		cols:       make([]column, schema.NumFields()),
		slots:      make([]slot, schema.NumFields()),
		dataPerRow: make([]float64, schema.NumFields()),
		external:   -1,
		ints:       make([]int64, schema.NumFields()),
		floats:     make([]float64, schema.NumFields()),
		bins:       make([][]byte, schema.NumFields()),
	}
	for i, f := range schema.Fields() {
		d.names[f.Name] = i
		switch f.Type.ID() {
		case arrow.STRING, arrow.BINARY, arrow.INT64, arrow.FLOAT64, arrow.BOOL, arrow.TIMESTAMP:
		default:
			return nil, fmt.Errorf("codec: column %q: unsupported type %s", f.Name, f.Type)
		}
		d.types[i] = f.Type.ID()
		d.cols[i] = newColumn(f.Type)
	}
	for _, r := range required {
		i, ok := d.names[r]
		if !ok {
			return nil, fmt.Errorf("codec: required column %q is not in the schema", r)
		}
		d.required[i] = true
	}
	return d, nil
}

// Schema is the decoder's output schema.
func (d *JSONDecoder) Schema() *arrow.Schema { return d.schema }

// Reserve makes room for n more rows in the columns, including the string
// and binary bytes the last record suggests they will need.
func (d *JSONDecoder) Reserve(n int) {
	for i := range d.cols {
		d.cols[i].reserve(n, int(d.dataPerRow[i]*float64(n)*1.1))
	}
}

// ReserveRows makes room for n more rows in bld, with perRow[i] string or
// binary bytes per row for column i (as MeasureRows found them).
func ReserveRows(bld *array.RecordBuilder, perRow []float64, n int) {
	bld.Reserve(n)
	for i, per := range perRow {
		if per > 0 {
			switch b := bld.Field(i).(type) {
			case *array.StringBuilder:
				b.ReserveData(int(per * float64(n) * 1.1))
			case *array.BinaryBuilder:
				b.ReserveData(int(per * float64(n) * 1.1))
			}
		}
	}
}

// MeasureRows records in perRow how many string or binary bytes each
// column of rec held per row, for the next ReserveRows.
func MeasureRows(rec arrow.Record, perRow []float64) {
	rows := rec.NumRows()
	if rows == 0 {
		return
	}
	for i := range perRow {
		switch a := rec.Column(i).(type) {
		case *array.String:
			perRow[i] = float64(len(a.ValueBytes())) / float64(rows)
		case *array.Binary:
			perRow[i] = float64(len(a.ValueBytes())) / float64(rows)
		}
	}
}

// Rows is how many rows were appended since the last NewRecord.
func (d *JSONDecoder) Rows() int { return d.rows }

// NewRecord returns the rows appended so far as a record and resets the
// columns. The caller owns the record and must Release it.
func (d *JSONDecoder) NewRecord() arrow.Record {
	arrs := make([]arrow.Array, len(d.cols))
	for i := range d.cols {
		arrs[i] = d.cols[i].finish(d.rows)
	}
	rec := array.NewRecord(d.schema, arrs, int64(d.rows))
	for _, a := range arrs {
		a.Release()
	}
	d.rows = 0
	MeasureRows(rec, d.dataPerRow)
	return rec
}

// Release drops the rows appended since the last NewRecord.
func (d *JSONDecoder) Release() {
	for i := range d.cols {
		d.cols[i] = newColumn(d.cols[i].typ)
	}
	d.rows = 0
}

// SetExternal makes the string column name take its value from the ext
// argument of AppendWith instead of the JSON document.
func (d *JSONDecoder) SetExternal(name string) error {
	i, ok := d.names[name]
	if !ok || d.types[i] != arrow.STRING {
		return fmt.Errorf("codec: external column %q must be a string column of the schema", name)
	}
	d.external = i
	delete(d.names, name)
	d.order = d.order[:0]
	return nil
}

// Append decodes one JSON object and appends it as a row. On error nothing
// is appended and the error is a *DecodeError.
func (d *JSONDecoder) Append(b []byte) error { return d.AppendWith(b, nil) }

// AppendWith is Append with the value of the external column (nil: null).
func (d *JSONDecoder) AppendWith(b, ext []byte) error {
	for i := range d.slots {
		d.slots[i] = slot{}
	}
	if err := d.scan(b); err != nil {
		return err
	}
	if x := d.external; x >= 0 && ext != nil {
		if !utf8.Valid(ext) {
			return &DecodeError{Column: d.schema.Field(x).Name, Msg: "header value is not valid UTF-8"}
		}
		// Point the slot at ext: str() reads it from there.
		d.slots[x] = slot{kind: vString, start: -1}
		d.extBuf = ext
	}
	// Check every column before touching a builder.
	for i, s := range d.slots {
		if s.kind == vMissing || s.kind == vNull {
			if d.required[i] {
				return &DecodeError{Column: d.schema.Field(i).Name, Msg: "missing (required)"}
			}
			continue
		}
		if s.start < 0 {
			continue // external value, checked above
		}
		if err := d.check(i, b, &d.slots[i]); err != nil {
			return err
		}
	}
	row := d.rows
	for i, s := range d.slots {
		c := &d.cols[i]
		if s.kind == vMissing || s.kind == vNull {
			c.null(row)
			continue
		}
		switch d.types[i] {
		case arrow.STRING:
			c.appendBytes(row, d.str(b, s))
		case arrow.BINARY:
			if s.start < 0 {
				c.appendBytes(row, d.extBuf) // an external value, as it came
			} else {
				c.appendBytes(row, d.bins[i])
			}
		case arrow.INT64, arrow.TIMESTAMP:
			c.appendInt(row, d.ints[i])
		case arrow.FLOAT64:
			c.appendFloat(row, d.floats[i])
		case arrow.BOOL:
			c.appendBool(row, s.kind == vTrue)
		}
	}
	d.rows++
	return nil
}

// check validates slot s for column i and parses numbers into d.ints/d.floats.
func (d *JSONDecoder) check(i int, b []byte, s *slot) error {
	switch d.types[i] {
	case arrow.STRING, arrow.BINARY:
		if s.kind != vString {
			return d.typeErr(i, "a string", s.kind)
		}
		v := b[s.start:s.end]
		if s.escaped {
			var ok bool
			if d.scratch, ok = unescape(d.scratch[:0], v); !ok {
				return &DecodeError{Column: d.schema.Field(i).Name, Msg: "bad escape in string"}
			}
			v = d.scratch
		}
		if d.types[i] == arrow.STRING && (s.escaped || s.high) && !utf8.Valid(v) {
			return &DecodeError{Column: d.schema.Field(i).Name, Msg: "string is not valid UTF-8"}
		}
		if d.types[i] == arrow.BINARY {
			// bytes are base64 in JSON, both ways (as encoding/json does).
			n := base64.StdEncoding.DecodedLen(len(v))
			if cap(d.bins[i]) < n {
				d.bins[i] = make([]byte, n)
			}
			m, err := base64.StdEncoding.Decode(d.bins[i][:n], v)
			if err != nil {
				return &DecodeError{Column: d.schema.Field(i).Name, Msg: "want base64 (a bytes column), got " + fmt.Sprintf("%.40q", v)}
			}
			d.bins[i] = d.bins[i][:m]
		}
	case arrow.INT64:
		if s.kind != vNumber {
			return d.typeErr(i, "an integer", s.kind)
		}
		v, ok := parseInt(b[s.start:s.end])
		if !ok {
			return &DecodeError{Column: d.schema.Field(i).Name, Msg: fmt.Sprintf("want an integer, got %.40s", b[s.start:s.end])}
		}
		d.ints[i] = v
	case arrow.FLOAT64:
		if s.kind != vNumber {
			return d.typeErr(i, "a number", s.kind)
		}
		v, err := strconv.ParseFloat(unsafeString(b[s.start:s.end]), 64)
		if err != nil {
			return &DecodeError{Column: d.schema.Field(i).Name, Msg: fmt.Sprintf("want a number, got %.40s", b[s.start:s.end])}
		}
		d.floats[i] = v
	case arrow.BOOL:
		if s.kind != vTrue && s.kind != vFalse {
			return d.typeErr(i, "true or false", s.kind)
		}
	case arrow.TIMESTAMP:
		switch s.kind {
		case vNumber:
			v, ok := parseInt(b[s.start:s.end])
			if !ok {
				return &DecodeError{Column: d.schema.Field(i).Name, Msg: "want milliseconds since the epoch or an RFC 3339 string"}
			}
			d.ints[i] = v
		case vString:
			t, err := time.Parse(time.RFC3339Nano, unsafeString(b[s.start:s.end]))
			if err != nil {
				return &DecodeError{Column: d.schema.Field(i).Name, Msg: fmt.Sprintf("want an RFC 3339 time, got %.40q", b[s.start:s.end])}
			}
			d.ints[i] = t.UnixMilli()
		default:
			return d.typeErr(i, "a timestamp", s.kind)
		}
	}
	return nil
}

// typeErr says column i holds a value of kind k where want was expected.
func (d *JSONDecoder) typeErr(i int, want string, k valKind) error {
	return &DecodeError{Column: d.schema.Field(i).Name, Msg: fmt.Sprintf("want %s, got %s", want, kindName(k))}
}

// str returns the bytes of string slot s, unescaped into scratch if needed.
func (d *JSONDecoder) str(b []byte, s slot) []byte {
	if s.start < 0 {
		return d.extBuf
	}
	if !s.escaped {
		return b[s.start:s.end]
	}
	d.scratch, _ = unescape(d.scratch[:0], b[s.start:s.end])
	return d.scratch
}

func kindName(k valKind) string {
	switch k {
	case vString:
		return "a string"
	case vNumber:
		return "a number"
	case vTrue, vFalse:
		return "a bool"
	case vNested:
		return "an object or array"
	case vNull:
		return "null"
	}
	return "nothing"
}

func syntaxErr(b []byte, i int, what string) error {
	if i >= len(b) {
		return &DecodeError{Msg: "invalid JSON: unexpected end of input, want " + what}
	}
	return &DecodeError{Msg: fmt.Sprintf("invalid JSON at byte %d: want %s, got %q", i, what, b[i])}
}

// scan walks one JSON object and records where each known column's value is.
type orderedField struct {
	name string
	col  int
}

// column returns the schema column of field key at position pos of the
// object (ok false: the field is not in the schema).
func (d *JSONDecoder) column(key []byte, pos int) (int, bool) {
	if pos < len(d.order) && d.order[pos].name == string(key) {
		c := d.order[pos].col
		return c, c >= 0
	}
	col, known := d.names[string(key)]
	if !known {
		col = -1
	}
	if pos < len(d.order) {
		d.order[pos] = orderedField{name: string(key), col: col}
	} else if pos == len(d.order) && pos < 4*len(d.slots)+8 {
		d.order = append(d.order, orderedField{name: string(key), col: col})
	}
	return col, known
}

func (d *JSONDecoder) scan(b []byte) error {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		if i >= len(b) {
			return &DecodeError{Msg: "empty record"}
		}
		return syntaxErr(b, i, "'{'")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return d.trailing(b, i+1)
	}
	for pos := 0; ; pos++ {
		if i >= len(b) || b[i] != '"' {
			return syntaxErr(b, i, "a field name")
		}
		ks, ke, esc, _, ok := scanString(b, i+1)
		if !ok {
			return syntaxErr(b, len(b), "end of field name")
		}
		key := b[ks:ke]
		if esc {
			d.keyBuf, ok = unescape(d.keyBuf[:0], key)
			if !ok {
				return &DecodeError{Msg: "bad escape in field name"}
			}
			key = d.keyBuf
		}
		col, known := d.column(key, pos)
		i = skipWS(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return syntaxErr(b, i, "':'")
		}
		i = skipWS(b, i+1)
		// An unknown field's value is scanned into the discard slot.
		s := &d.discard
		if known {
			s = &d.slots[col]
		}
		var err error
		if i, err = scanValue(b, i, 0, s); err != nil {
			return err
		}
		i = skipWS(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' {
			return d.trailing(b, i+1)
		}
		return syntaxErr(b, i, "',' or '}'")
	}
}

func (d *JSONDecoder) trailing(b []byte, i int) error {
	if i = skipWS(b, i); i != len(b) {
		return syntaxErr(b, i, "end of record")
	}
	return nil
}

const maxDepth = 64

// scanValue scans the value at b[i] into *s and returns the index after it.
func scanValue(b []byte, i, depth int, s *slot) (int, error) {
	if i >= len(b) {
		return i, syntaxErr(b, i, "a value")
	}
	switch c := b[i]; {
	case c == '"':
		st, e, esc, high, ok := scanString(b, i+1)
		if !ok {
			return i, syntaxErr(b, len(b), "end of string")
		}
		*s = slot{kind: vString, start: st, end: e, escaped: esc, high: high}
		return e + 1, nil
	case c == '-' || (c >= '0' && c <= '9'):
		j := i + 1
		for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '+' || b[j] == '-') {
			j++
		}
		if !validNumber(b[i:j]) {
			return i, &DecodeError{Msg: fmt.Sprintf("invalid JSON number %.40q", b[i:j])}
		}
		*s = slot{kind: vNumber, start: i, end: j}
		return j, nil
	case c == 't':
		return literal(b, i, "true", vTrue, s)
	case c == 'f':
		return literal(b, i, "false", vFalse, s)
	case c == 'n':
		return literal(b, i, "null", vNull, s)
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return i, &DecodeError{Msg: "nested too deeply"}
		}
		end, err := skipNested(b, i, depth)
		*s = slot{kind: vNested, start: i, end: end}
		return end, err
	}
	return i, syntaxErr(b, i, "a value")
}

func literal(b []byte, i int, lit string, k valKind, s *slot) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, syntaxErr(b, i, lit)
	}
	*s = slot{kind: k, start: i, end: i + len(lit)}
	return i + len(lit), nil
}

func skipNested(b []byte, i, depth int) (int, error) {
	open := b[i]
	close := byte('}')
	if open == '[' {
		close = ']'
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == close {
		return i + 1, nil
	}
	for {
		if open == '{' {
			if i >= len(b) || b[i] != '"' {
				return i, syntaxErr(b, i, "a field name")
			}
			_, e, _, _, ok := scanString(b, i+1)
			if !ok {
				return i, syntaxErr(b, len(b), "end of field name")
			}
			i = skipWS(b, e+1)
			if i >= len(b) || b[i] != ':' {
				return i, syntaxErr(b, i, "':'")
			}
			i = skipWS(b, i+1)
		}
		var err error
		var discard slot
		i, err = scanValue(b, i, depth+1, &discard)
		if err != nil {
			return i, err
		}
		i = skipWS(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if i < len(b) && b[i] == close {
			return i + 1, nil
		}
		return i, syntaxErr(b, i, "',' or '"+string(close)+"'")
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString finds the closing quote of the string starting at b[i].
func scanString(b []byte, i int) (start, end int, escaped, high, ok bool) {
	start = i
	for i < len(b) {
		switch c := b[i]; {
		case c == '"':
			return start, i, escaped, high, true
		case c == '\\':
			escaped = true
			i += 2
			continue
		case c < 0x20:
			return start, i, escaped, high, false
		case c >= 0x80:
			high = true
		}
		i++
	}
	return start, i, escaped, high, false
}

func validNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return false
	}
	if b[i] == '0' {
		i++
	} else if b[i] >= '1' && b[i] <= '9' {
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	} else {
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	return i == len(b)
}

// parseInt parses a JSON integer; a fraction or exponent is refused unless
// the value is integral (1.0, 1e3).
func parseInt(b []byte) (int64, bool) {
	neg := false
	i := 0
	if len(b) > 0 && b[0] == '-' {
		neg, i = true, 1
	}
	if i == len(b) {
		return 0, false
	}
	var v uint64
	for ; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			f, err := strconv.ParseFloat(unsafeString(b), 64)
			if err != nil || f != math.Trunc(f) || f > math.MaxInt64 || f < math.MinInt64 {
				return 0, false
			}
			return int64(f), true
		}
		if v > (math.MaxUint64-9)/10 {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}

func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// unescape appends the decoded JSON string body s to dst.
func unescape(dst, s []byte) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i >= len(s) {
			return dst, false
		}
		switch s[i] {
		case '"', '\\', '/':
			dst = append(dst, s[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s, i+1)
			if !ok {
				return dst, false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if i+6 < len(s)+0 && s[i+1] == '\\' && s[i+2] == 'u' {
					r2, ok = hex4(s, i+3)
				}
				if dec := utf16.DecodeRune(r, r2); ok && dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, false
		}
	}
	return dst, true
}

func hex4(s []byte, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range s[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// IsDecodeError reports whether err is a data problem of one record.
func IsDecodeError(err error) bool {
	var de *DecodeError
	return errors.As(err, &de)
}
