package main

import (
	"log/slog"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tollgate-dev/tollgate/internal/logging"
)

// routeLibraryLogs sends the logs of go-redis, controller-runtime and
// client-go (klog) to log, so that serve writes one structured stream.
// They log through process-wide loggers; this is the one place that sets
// them.
//
// go-redis's lines ("connection pool: failed to dial after 1 attempts",
// one per failed dial) go to debug: the quota store's state is logged by
// tollgate itself, once per transition (ratelimit.Resilient), and shown
// by tollgate_quota_store_up and /readyz.
func routeLibraryLogs(log *slog.Logger) {
	redis.SetLogger(logging.NewPrintf(log.With("logger", "go-redis"), slog.LevelDebug, "redis: "))
	ctrllog.SetLogger(logr.FromSlogHandler(log.Handler()))
	klog.SetSlogLogger(log)
}
