package httpauth_test

import (
	"net/http/httptest"
	"testing"

	"github.com/tollgate-dev/tollgate/pkg/httpauth"
)

// BenchmarkRequest converts a forward-auth request as Traefik sends it,
// with a browser's headers, into the decision core's Request.
func BenchmarkRequest(b *testing.B) {
	r := httptest.NewRequest("GET", "/auth", nil)
	for k, v := range map[string]string{
		"X-Forwarded-Method": "GET", "X-Forwarded-Host": "api.example.com", "X-Forwarded-Uri": "/api/users/alice/tasks/42?page=2",
		"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7", "X-Real-Ip": "203.0.113.7",
		"Authorization": "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln", "Accept": "application/json",
		"Accept-Encoding": "gzip, deflate, br", "Accept-Language": "en-GB,en;q=0.9", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64)",
		"Cookie": "theme=dark; session=abc", "Referer": "https://app.example.com/", "Origin": "https://app.example.com",
		"X-Request-Id": "2f0c4d9e-5b1a-4c7e-9f3d-8a6b2e1c0d4f", "Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	} {
		r.Header.Set(k, v)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := httpauth.Request(r, httpauth.Forwarded); err != nil {
			b.Fatal(err)
		}
	}
}
