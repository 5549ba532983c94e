package ratelimit

import "testing"

func TestCRC16(t *testing.T) {
	// The check value of CRC-16/XMODEM, also in the Redis Cluster spec.
	if got := crc16("123456789"); got != 0x31C3 {
		t.Fatalf("crc16(123456789) = %#04x, want 0x31c3", got)
	}
}

func TestHashSlot(t *testing.T) {
	tests := map[string]struct {
		key  string
		want int
	}{
		"a plain key hashes whole":            {"123456789", 0x31C3 % hashSlots},
		"a hash tag hashes its content":       {"tollgate:{123456789}", 0x31C3 % hashSlots},
		"only the first tag counts":           {"x{123456789}{other}", 0x31C3 % hashSlots},
		"an empty tag hashes the whole key":   {"{}123456789", int(crc16("{}123456789") % hashSlots)},
		"an unclosed brace hashes whole":      {"{123456789", int(crc16("{123456789") % hashSlots)},
		"a tag ends at the first close brace": {"{123456789}}", 0x31C3 % hashSlots},
		"foo from the cluster tutorial":       {"foo", 12182},
		"bar from the cluster tutorial":       {"bar", 5061},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := hashSlot(tt.key); got != tt.want {
				t.Fatalf("hashSlot(%q) = %d, want %d", tt.key, got, tt.want)
			}
		})
	}
}
