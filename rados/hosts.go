//go:build rados

package rados

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/ceph/go-ceph/rados"
)

// hostsObject is the host registry: omap "name.<name>" -> id (2 bytes,
// big endian) and "id.<id>" -> name.
const hostsObject = "bh.hosts"

// maxHostID is the largest host id (a Loc has 16 bits for it; 0 is none).
const maxHostID = 1<<hostBits - 1

// RegisterHost returns name's host id, giving it the lowest free one the
// first time. Name and id are claimed together in one atomic op that
// asserts both are absent (cmpomap.cmp_vals), so two hosts registering
// at once never share an id, and one name never gets two.
func (c *Conn) RegisterHost(name string) (uint16, error) {
	if name == "" || strings.ContainsAny(name, "\x00") {
		return 0, fmt.Errorf("%w: host name %q", ErrArg, name)
	}
	nameKey := "name." + name
	if id, ok, err := c.hostID(nameKey); err != nil || ok {
		return id, err
	}
	taken, err := c.io.GetAllOmapValues(hostsObject, "", "id.", 1024)
	if err != nil && errnoOf(err) != -errENOENT {
		return 0, c.wrap("read "+hostsObject, err)
	}
	for id := 1; id <= maxHostID; id++ {
		idKey := "id." + strconv.Itoa(id)
		if _, ok := taken[idKey]; ok {
			continue
		}
		op := rados.CreateWriteOp()
		op.Create(rados.CreateIdempotent)
		op.Exec("cmpomap", "cmp_vals", encodeCmpOmap(cmpModeString, cmpOpEQ,
			map[string][]byte{nameKey: nil, idKey: nil}, withDefault, nil))
		op.SetOmap(map[string][]byte{nameKey: binary.BigEndian.AppendUint16(nil, uint16(id)), idKey: []byte(name)})
		err := op.Operate(c.io, hostsObject, rados.OperationNoFlag)
		op.Release()
		if err == nil {
			return uint16(id), nil
		}
		if errnoOf(err) != -errECANCELED {
			return 0, c.wrap("register host "+name, err)
		}
		// The id was taken meanwhile, or this name was registered by
		// another run: the name's id wins.
		if id, ok, err := c.hostID(nameKey); err != nil || ok {
			return id, err
		}
	}
	return 0, fmt.Errorf("%w: registering %q", ErrNoHostID, name)
}

// hostID reads a name's id.
func (c *Conn) hostID(nameKey string) (uint16, bool, error) {
	op := rados.CreateReadOp()
	defer op.Release()
	step := op.GetOmapValuesByKeys([]string{nameKey})
	if err := op.Operate(c.io, hostsObject, rados.OperationNoFlag); err != nil {
		if errnoOf(err) == -errENOENT {
			return 0, false, nil
		}
		return 0, false, c.wrap("read "+hostsObject, err)
	}
	kv, err := step.Next()
	if err != nil {
		return 0, false, c.wrap("read "+hostsObject, err)
	}
	if kv == nil {
		return 0, false, nil
	}
	if len(kv.Value) != 2 || binary.BigEndian.Uint16(kv.Value) == 0 {
		return 0, false, fmt.Errorf("%w: %s: %q -> %x", ErrBadValue, hostsObject, nameKey, kv.Value)
	}
	return binary.BigEndian.Uint16(kv.Value), true, nil
}
