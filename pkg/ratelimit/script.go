package ratelimit

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

// The scripts are plain Lua files so that they can be read, linted and run
// with redis-cli --eval on their own.
var (
	//go:embed take.lua
	takeLua string
	//go:embed refund.lua
	refundLua string
)

// scripts holds the Redis scripts of one store. redis.Script.Run sends
// EVALSHA and falls back to EVAL (which also loads the script) on NOSCRIPT,
// e.g. after a Redis restart or a failover to a node that never saw it.
type scripts struct {
	take   *redis.Script
	refund *redis.Script
}

func newScripts() scripts {
	return scripts{take: redis.NewScript(takeLua), refund: redis.NewScript(refundLua)}
}
