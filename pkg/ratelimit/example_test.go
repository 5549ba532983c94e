package ratelimit_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
)

// A decision with a per-user and a per-ip limit: the per-user limit denies,
// so neither counter is charged.
func ExampleMemory_Take() {
	store := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	defer store.Close()
	perUser := ratelimit.Limit{Key: []byte("shop/api:per-user:u:iss|alice"), Requests: 1, Period: time.Minute}
	perIP := ratelimit.Limit{Key: []byte("shop/api:global-per-ip:ip:192.0.2.1"), Requests: 100, Period: 15 * time.Minute}

	for range 2 {
		res, err := store.Take(context.Background(), []ratelimit.Limit{perIP, perUser}, nil)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("allowed=%v per-ip remaining=%d per-user retry-after=%s\n",
			res.Allowed, res.Statuses[0].Remaining, res.Statuses[1].RetryAfter.Round(time.Second))
	}
	// Output:
	// allowed=true per-ip remaining=99 per-user retry-after=0s
	// allowed=false per-ip remaining=99 per-user retry-after=1m0s
}

// Choosing the outage behaviour from --on-store-error.
func ExampleParseOnError() {
	onError, err := ratelimit.ParseOnError("deny")
	fmt.Println(onError, err)
	_, err = ratelimit.ParseOnError("ignore")
	fmt.Println(err)
	// Output:
	// deny <nil>
	// ratelimit: on-store-error "ignore": want local, allow or deny
}
