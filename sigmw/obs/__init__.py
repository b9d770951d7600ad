"""Observability: what the daemon exports (Prometheus metrics, /healthz, /readyz,
the admin endpoint behind `sigmw status`). Read from the daemon's state and
events at scrape time; nothing here is called from a sans-IO core."""
