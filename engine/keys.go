package engine

import "encoding/binary"

// State key layout (all under "a/<app>/"):
//
//	o/<topic>\x00<partition:4>                  next source offset to consume
//	b/<bucket>\x00<partition:4>/m               bucket's next sequence number
//	b/<bucket>\x00<partition:4>/c/<first:8><end:8>  chunk of objects [first,end), Arrow IPC
//	b/<bucket>\x00<partition:4>/t/<trigger>     trigger state
//	b/<bucket>\x00<partition:4>/w/<trigger>\x00<pane:8>  a window's partial aggregate (fold.go)
//	b/<bucket>\x00<partition:4>/f/<trigger>     present: the trigger's state was written folding
//
//	t/<table>\x00<partition:4><key>          latest JSON row of a table sink
//	s/<partition:4><session>                   a durable invocation's record (durable.go)
//	x/<partition:4>                            the last cycle's marker (also in the changelog)
//	k/<partition:4>                            changelog offset the local state reflects (local only)
//	v                                          the format version of all of it (local only; format.go)
//
// Integers are big-endian so chunks scan in sequence order.

func appPrefix(app string) []byte { return []byte("a/" + app + "/") }

func offsetKey(app, topic string, part int32) []byte {
	k := append(appPrefix(app), 'o', '/')
	k = append(k, topic...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, uint32(part))
}

func bucketPrefix(app, bucket string, part int32) []byte {
	k := append(appPrefix(app), 'b', '/')
	k = append(k, bucket...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint32(k, uint32(part))
	return append(k, '/')
}

func sessionPrefix(app string, part int32) []byte {
	k := append(appPrefix(app), 's', '/')
	return binary.BigEndian.AppendUint32(k, uint32(part))
}

func sessionKey(app string, part int32, id string) []byte {
	return append(sessionPrefix(app, part), id...)
}

func metaKey(prefix []byte) []byte { return append(append([]byte{}, prefix...), 'm') }

func chunkPrefix(prefix []byte) []byte { return append(append([]byte{}, prefix...), 'c', '/') }

func chunkKey(prefix []byte, first, end uint64) []byte {
	k := chunkPrefix(prefix)
	k = binary.BigEndian.AppendUint64(k, first)
	return binary.BigEndian.AppendUint64(k, end)
}

func triggerKey(prefix []byte, trigger string) []byte {
	k := append(append([]byte{}, prefix...), 't', '/')
	return append(k, trigger...)
}

// OffsetKey, BucketPrefix and ChunkPrefix expose the layout to tools and
// tests that inspect a node's state directory.
func OffsetKey(app, topic string, part int32) []byte { return offsetKey(app, topic, part) }

// BucketChunkPrefix is the prefix of a bucket partition's chunk keys.
func BucketChunkPrefix(app, bucket string, part int32) []byte {
	return chunkPrefix(bucketPrefix(app, bucket, part))
}

// ChunkRange decodes the [first, end) sequence range from a chunk key.
func ChunkRange(key []byte) (first, end uint64) {
	n := len(key)
	return binary.BigEndian.Uint64(key[n-16 : n-8]), binary.BigEndian.Uint64(key[n-8:])
}

// TriggerKey is the state key of a trigger's state in one bucket partition.
func TriggerKey(app, bucket string, part int32, trigger string) []byte {
	return triggerKey(bucketPrefix(app, bucket, part), trigger)
}

func tablePrefix(app, table string) []byte {
	k := append(appPrefix(app), 't', '/')
	k = append(k, table...)
	return append(k, 0)
}

func tableKey(app, table string, part int32, key []byte) []byte {
	k := binary.BigEndian.AppendUint32(tablePrefix(app, table), uint32(part))
	return append(k, key...)
}
