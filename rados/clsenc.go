package rados

import (
	"encoding/binary"
	"sort"
)

// Inputs of Ceph object classes in Ceph's own encoding: integers little
// endian, a string or byte list as a 32-bit length and its bytes, a
// versioned struct as ENCODE_START(version, compat): one byte each, then
// the 32-bit length of what follows.

type cephEnc struct{ b []byte }

func (e *cephEnc) u8(v uint8) { e.b = append(e.b, v) }

func (e *cephEnc) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }

func (e *cephEnc) bytes(s []byte) {
	e.u32(uint32(len(s)))
	e.b = append(e.b, s...)
}

// start opens a versioned struct and returns where its length goes.
func (e *cephEnc) start(version, compat uint8) int {
	e.u8(version)
	e.u8(compat)
	e.u32(0)
	return len(e.b)
}

// finish closes the struct opened at body (start's result).
func (e *cephEnc) finish(body int) {
	binary.LittleEndian.PutUint32(e.b[body-4:], uint32(len(e.b)-body))
}

// cmpomap's comparison modes and operators (CEPH_OSD_CMPXATTR_*).
const (
	cmpModeString = 1
	cmpOpEQ       = 1
)

// cmpomapMaxKeys is the most keys one cmpomap call accepts (E2BIG above).
const cmpomapMaxKeys = 1000

// encodeCmpOmap encodes cmpomap's cmp_vals_op (withDefault: the optional
// default value is present and def is it) or, with noDefault, its
// cmp_rm_keys_op, which has no default field: mode, comparison, then a
// sorted map key -> value.
func encodeCmpOmap(mode, op uint8, vals map[string][]byte, field defaultField, def []byte) []byte {
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var e cephEnc
	body := e.start(1, 1)
	e.u8(mode)
	e.u8(op)
	e.u32(uint32(len(keys)))
	for _, k := range keys {
		e.bytes([]byte(k))
		e.bytes(vals[k])
	}
	switch field {
	case withDefault:
		e.u8(1)
		e.bytes(def)
	case absentDefault:
		e.u8(0)
	case noDefault:
	}
	e.finish(body)
	return e.b
}

// defaultField says how encodeCmpOmap ends.
type defaultField int

const (
	noDefault     defaultField = iota // cmp_rm_keys_op: no such field
	absentDefault                     // std::optional empty
	withDefault                       // std::optional holding def
)

// Lock types of cls_lock (ClsLockType).
const lockExclusive = 1

// encodeLockAssert encodes cls_lock's cls_lock_assert_op: name, type,
// cookie, tag.
func encodeLockAssert(name string, typ uint8, cookie, tag string) []byte {
	var e cephEnc
	body := e.start(1, 1)
	e.bytes([]byte(name))
	e.u8(typ)
	e.bytes([]byte(cookie))
	e.bytes([]byte(tag))
	e.finish(body)
	return e.b
}
