package ratelimit

import "strings"

// hashSlots is the number of Redis Cluster hash slots.
const hashSlots = 16384

// hashSlot returns the Redis Cluster slot of key, following the Redis rule:
// when key holds a non-empty "{...}", only the part between the first '{'
// and the next '}' is hashed. go-redis computes this internally but does not
// export it.
func hashSlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % hashSlots)
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum
// Redis Cluster uses for key slots.
func crc16(s string) uint16 {
	var crc uint16
	for i := range len(s) {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
