package server

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// checkArrowStream vets an Arrow IPC stream from outside before the Arrow
// reader sees it. That reader trusts the lengths the stream claims — of
// messages, bodies, buffers and the flatbuffer vectors of a schema — and
// allocates whatever they say: 13 bytes crafted by the fuzzer asked for
// 177 GB and the process died. Here every length must fit in the bytes
// actually sent, nesting is bounded, and compressed bodies (whose
// uncompressed size is another claim) are refused.
func checkArrowStream(b []byte) error {
	pos := 0
	for pos+4 <= len(b) {
		if binary.LittleEndian.Uint32(b[pos:]) == 0xFFFFFFFF {
			pos += 4 // continuation marker
			if pos+4 > len(b) {
				return errArrow("truncated message length")
			}
		}
		metaLen := int(int32(binary.LittleEndian.Uint32(b[pos:])))
		pos += 4
		if metaLen == 0 {
			return nil // end of stream
		}
		if metaLen < 0 || metaLen > len(b)-pos {
			return errArrow("message of %d bytes in %d", metaLen, len(b)-pos)
		}
		fb := flatbuf(b[pos : pos+metaLen])
		pos += metaLen
		msg, err := fb.root()
		if err != nil {
			return err
		}
		bodyLen, err := fb.int64Field(msg, 3)
		if err != nil {
			return err
		}
		if bodyLen < 0 || bodyLen > int64(len(b)-pos) {
			return errArrow("body of %d bytes in %d", bodyLen, len(b)-pos)
		}
		if err := fb.keyValues(msg, 4); err != nil {
			return err
		}
		kind, err := fb.uint8Field(msg, 1)
		if err != nil {
			return err
		}
		header, ok, err := fb.table(msg, 2)
		if err != nil {
			return err
		}
		if ok {
			switch kind {
			case 1: // Schema
				err = fb.schema(header)
			case 2: // DictionaryBatch: its RecordBatch is field 1
				var rb int
				if rb, ok, err = fb.table(header, 1); err == nil && ok {
					err = fb.recordBatch(rb, bodyLen)
				}
			case 3: // RecordBatch
				err = fb.recordBatch(header, bodyLen)
			}
			if err != nil {
				return err
			}
		}
		pos += int(bodyLen)
	}
	return nil
}

func errArrow(format string, args ...any) error {
	return fmt.Errorf("body: not a sound Arrow IPC stream: "+format, args...)
}

var errFlatbuf = errArrow("metadata points outside itself")

// flatbuf reads a flatbuffer with every offset and length checked.
type flatbuf []byte

func (f flatbuf) u32(p int) (int, error) {
	if p < 0 || p+4 > len(f) {
		return 0, errFlatbuf
	}
	return int(binary.LittleEndian.Uint32(f[p:])), nil
}

func (f flatbuf) root() (int, error) { return f.u32(0) }

// slot returns the position of field i of the table at tab (0: absent).
func (f flatbuf) slot(tab, i int) (int, error) {
	soff, err := f.u32(tab)
	if err != nil {
		return 0, err
	}
	vt := tab - int(int32(uint32(soff)))
	if vt < 0 || vt+4 > len(f) {
		return 0, errFlatbuf
	}
	vlen := int(binary.LittleEndian.Uint16(f[vt:]))
	// As the flatbuffers reader decides: a slot is there when its offset in
	// the vtable is below the vtable's size, even if its two bytes run past
	// that size (the fuzzer found a vtable of odd size that hid a vector
	// from this check but not from the Arrow reader).
	if 4+2*i >= vlen {
		return 0, nil
	}
	at := vt + 4 + 2*i
	if at+2 > len(f) {
		return 0, errFlatbuf
	}
	off := int(binary.LittleEndian.Uint16(f[at:]))
	if off == 0 {
		return 0, nil
	}
	return tab + off, nil
}

func (f flatbuf) int64Field(tab, i int) (int64, error) {
	p, err := f.slot(tab, i)
	if err != nil || p == 0 {
		return 0, err
	}
	if p+8 > len(f) {
		return 0, errFlatbuf
	}
	return int64(binary.LittleEndian.Uint64(f[p:])), nil
}

func (f flatbuf) uint8Field(tab, i int) (uint8, error) {
	p, err := f.slot(tab, i)
	if err != nil || p == 0 {
		return 0, err
	}
	if p >= len(f) {
		return 0, errFlatbuf
	}
	return f[p], nil
}

// table follows field i to the table it references.
func (f flatbuf) table(tab, i int) (int, bool, error) {
	p, err := f.slot(tab, i)
	if err != nil || p == 0 {
		return 0, false, err
	}
	off, err := f.u32(p)
	if err != nil {
		return 0, false, err
	}
	return p + off, true, nil
}

// vector follows field i to a vector of elem-byte elements and returns the
// position of its first element and its length, both checked.
func (f flatbuf) vector(tab, i, elem int) (start, n int, err error) {
	p, err := f.slot(tab, i)
	if err != nil || p == 0 {
		return 0, 0, err
	}
	off, err := f.u32(p)
	if err != nil {
		return 0, 0, err
	}
	v := p + off
	if n, err = f.u32(v); err != nil {
		return 0, 0, err
	}
	if n > (len(f)-v-4)/elem {
		return 0, 0, errArrow("a vector of %d elements in %d bytes", n, len(f)-v-4)
	}
	return v + 4, n, nil
}

// keyValues checks a custom_metadata vector.
func (f flatbuf) keyValues(tab, i int) error {
	_, _, err := f.vector(tab, i, 4)
	return err
}

// schema checks Schema: fields (1), custom_metadata (2), features (3).
func (f flatbuf) schema(tab int) error {
	if err := f.keyValues(tab, 2); err != nil {
		return err
	}
	if _, _, err := f.vector(tab, 3, 8); err != nil {
		return err
	}
	return f.fields(tab, 1, 0)
}

// fields checks a vector of Field tables and, recursively, their children
// (5), custom_metadata (6) and union type ids.
func (f flatbuf) fields(tab, i, depth int) error {
	if depth > 32 {
		return errArrow("types nested deeper than 32")
	}
	start, n, err := f.vector(tab, i, 4)
	if err != nil {
		return err
	}
	for k := 0; k < n; k++ {
		off, err := f.u32(start + 4*k)
		if err != nil {
			return err
		}
		field := start + 4*k + off
		if err := f.keyValues(field, 6); err != nil {
			return err
		}
		if typ, err := f.uint8Field(field, 2); err != nil {
			return err
		} else if typ == 14 { // Union: typeIds (1) is a vector of int
			if ut, ok, err := f.table(field, 3); err != nil {
				return err
			} else if ok {
				if _, _, err := f.vector(ut, 1, 4); err != nil {
					return err
				}
			}
		}
		if err := f.fields(field, 5, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// recordBatch checks RecordBatch: nodes (1) and buffers (2) are vectors of
// 16-byte structs, every buffer inside the body; compression (3) refused.
func (f flatbuf) recordBatch(tab int, bodyLen int64) error {
	if _, ok, err := f.table(tab, 3); err != nil {
		return err
	} else if ok {
		return errors.New("body: compressed Arrow record batches are not accepted")
	}
	if _, _, err := f.vector(tab, 1, 16); err != nil {
		return err
	}
	start, n, err := f.vector(tab, 2, 16)
	if err != nil {
		return err
	}
	for k := 0; k < n; k++ {
		p := start + 16*k
		off := int64(binary.LittleEndian.Uint64(f[p:]))
		length := int64(binary.LittleEndian.Uint64(f[p+8:]))
		if off < 0 || length < 0 || off > bodyLen || length > bodyLen-off {
			return errArrow("a buffer [%d, +%d) outside the body of %d bytes", off, length, bodyLen)
		}
	}
	_, _, err = f.vector(tab, 4, 8) // variadic buffer counts
	return err
}
