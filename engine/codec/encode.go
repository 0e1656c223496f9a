package codec

import (
	"encoding/base64"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
)

// JSONEncoder writes rows of Arrow records as flat JSON objects. Values of
// types it does not know are written as null. The zero value is ready to
// use; an encoder is not safe for concurrent use (it caches the quoted
// column names of the last schema and the last formatted second).
type JSONEncoder struct {
	schema  *arrow.Schema
	names   [][]byte // `{"a":` then `,"b":` ...
	lastSec int64
	secBuf  []byte // "2006-01-02T15:04:05." of lastSec
}

// AppendRow appends row i of rec as one JSON object to dst.
func (e *JSONEncoder) AppendRow(dst []byte, rec arrow.Record, i int) []byte {
	if s := rec.Schema(); s != e.schema {
		e.schema = s
		e.names = e.names[:0]
		for c := 0; c < s.NumFields(); c++ {
			sep := byte(',')
			if c == 0 {
				sep = '{'
			}
			n := appendString([]byte{sep}, s.Field(c).Name)
			e.names = append(e.names, append(n, ':'))
		}
	}
	if len(e.names) == 0 {
		return append(dst, '{', '}')
	}
	for c, name := range e.names {
		dst = append(dst, name...)
		col := rec.Column(c)
		if ts, ok := col.(*array.Timestamp); ok && col.IsValid(i) {
			dst = e.appendTime(dst, ts, i)
			continue
		}
		dst = AppendValue(dst, col, i)
	}
	return append(dst, '}')
}

// appendTime formats like AppendValue, reusing the date and time of day
// when consecutive values fall in the same second.
func (e *JSONEncoder) appendTime(dst []byte, a *array.Timestamp, i int) []byte {
	unit := a.DataType().(*arrow.TimestampType).Unit
	if unit != arrow.Millisecond {
		return AppendValue(dst, a, i)
	}
	ms := int64(a.Value(i))
	sec, frac := ms/1000, ms%1000
	if frac < 0 {
		sec, frac = sec-1, frac+1000
	}
	if e.secBuf == nil || sec != e.lastSec {
		e.lastSec = sec
		e.secBuf = time.Unix(sec, 0).UTC().AppendFormat(e.secBuf[:0], "2006-01-02T15:04:05.")
	}
	dst = append(dst, '"')
	dst = append(dst, e.secBuf...)
	dst = append(dst, byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10), 'Z', '"')
	return dst
}

// AppendValue appends the JSON form of col[i] to dst. Timestamps are RFC 3339
// strings in UTC with milliseconds; bytes are base64, as encoding/json does.
func AppendValue(dst []byte, col arrow.Array, i int) []byte {
	if col.IsNull(i) {
		return append(dst, "null"...)
	}
	switch a := col.(type) {
	case *array.String:
		return appendString(dst, a.Value(i))
	case *array.Binary:
		v := a.Value(i)
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, v)
		return append(dst, '"')
	case *array.Int64:
		return strconv.AppendInt(dst, a.Value(i), 10)
	case *array.Float64:
		v := a.Value(i)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return append(dst, "null"...)
		}
		return strconv.AppendFloat(dst, v, 'g', -1, 64)
	case *array.Boolean:
		return strconv.AppendBool(dst, a.Value(i))
	case *array.List:
		start, end := a.ValueOffsets(i)
		vals := a.ListValues()
		dst = append(dst, '[')
		for j := start; j < end; j++ {
			if j > start {
				dst = append(dst, ',')
			}
			dst = AppendValue(dst, vals, int(j))
		}
		return append(dst, ']')
	case *array.Timestamp:
		unit := a.DataType().(*arrow.TimestampType).Unit
		t := a.Value(i).ToTime(unit).UTC()
		dst = append(dst, '"')
		dst = t.AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
		return append(dst, '"')
	}
	return append(dst, "null"...)
}

// AppendKey appends the bytes used as a Kafka key for col[i]: strings and
// binaries as is, numbers in decimal.
func AppendKey(dst []byte, col arrow.Array, i int) []byte {
	if col.IsNull(i) {
		return dst
	}
	switch a := col.(type) {
	case *array.String:
		return append(dst, a.Value(i)...)
	case *array.Binary:
		return append(dst, a.Value(i)...)
	case *array.Int64:
		return strconv.AppendInt(dst, a.Value(i), 10)
	case *array.Float64:
		return strconv.AppendFloat(dst, a.Value(i), 'g', -1, 64)
	case *array.Boolean:
		return strconv.AppendBool(dst, a.Value(i))
	case *array.Timestamp:
		return strconv.AppendInt(dst, int64(a.Value(i)), 10)
	}
	return dst
}

const hexDigits = "0123456789abcdef"

func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// RowBound is an upper bound of the size of row i of rec as a JSON object
// (as JSONEncoder.AppendRow writes it), computed without encoding; ok is
// false when a column's type has no cheap bound (lists), and the row must
// be encoded to know.
func RowBound(rec arrow.Record, i int) (n int, ok bool) {
	n = 2
	for c, col := range rec.Columns() {
		n += 6*len(rec.ColumnName(c)) + 4 // "name": and a comma, escaped at worst
		if col.IsNull(i) {
			n += 4
			continue
		}
		switch a := col.(type) {
		case *array.String:
			n += 6*len(a.Value(i)) + 2 // every byte escaped at worst (\u00XX)
		case *array.Binary:
			n += base64.StdEncoding.EncodedLen(len(a.Value(i))) + 2
		case *array.Int64, *array.Float64:
			n += 32
		case *array.Boolean:
			n += 5
		case *array.Timestamp:
			n += 40
		default:
			return 0, false
		}
	}
	return n, true
}
