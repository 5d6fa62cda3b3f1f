"""``aigov dashboard``: an importable Grafana dashboard and a Prometheus scrape configuration."""
