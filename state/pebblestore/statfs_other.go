//go:build !linux

package pebblestore

import "errors"

// freeBytes is not known on this system: commits never pause for space.
func freeBytes(string) (uint64, error) {
	return 0, errors.New("pebblestore: free space unknown on this system")
}
