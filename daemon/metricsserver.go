package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsServer serves the daemon's metrics over HTTP (/metrics, in the
// Prometheus text format) on the address given to ListenMetrics.
type metricsServer struct {
	srv  *http.Server
	addr net.Addr
	done chan struct{} // closed when Serve returned
}

// metricsShutdown bounds how long Close waits for scrapes in progress.
const metricsShutdown = 5 * time.Second

// MetricsHandler answers Prometheus scrapes of the daemon's metrics. It
// has no timeout of its own (Prometheus has its scrape timeout): with
// one, a client that half-closes its connection after its request (busybox
// nc) cancels the request and got an empty 503.
func (d *Daemon) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError, // a metric that fails leaves the others
		MaxRequestsInFlight: 4,
	})
}

// ListenMetrics serves /metrics on addr (host:port; port 0 picks one,
// see MetricsAddr) until Close. It fails at once if addr cannot be
// listened on. Call it once, after Open and before Serve (like Listen).
func (d *Daemon) ListenMetrics(addr string) error {
	if d.msrv != nil {
		return fmt.Errorf("%w: metrics already served on %s", ErrInvalid, d.msrv.addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("daemon: metrics address: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.MetricsHandler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "blockhash daemon: metrics at /metrics")
	})
	ms := &metricsServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		addr: ln.Addr(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(ms.done)
		if err := ms.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error().Err(err).Str("address", ms.addr.String()).Msg("metrics server stopped")
		}
	}()
	d.msrv = ms
	d.log.Info().Str("address", ms.addr.String()).Msg("serving metrics at /metrics")
	return nil
}

// MetricsAddr is the address metrics are served on (nil: none).
func (d *Daemon) MetricsAddr() net.Addr {
	if d.msrv == nil {
		return nil
	}
	return d.msrv.addr
}

// close stops the server: scrapes in progress finish first (for at most
// metricsShutdown), so none reads the store once it is closed.
func (ms *metricsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), metricsShutdown)
	defer cancel()
	if err := ms.srv.Shutdown(ctx); err != nil {
		ms.srv.Close()
	}
	<-ms.done
}
