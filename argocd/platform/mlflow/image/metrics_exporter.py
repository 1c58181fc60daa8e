"""Serve the MLflow server's Prometheus metrics on a port of their own, for the ServiceMonitor.

The server writes them per worker into PROMETHEUS_MULTIPROC_DIR (`--expose-prometheus`); its own
/metrics sits behind authentication, which a scrape should not need. This sidecar adds the
workers' files up and serves them, unauthenticated, on the port the NetworkPolicy opens.
"""

import os
import sys
from wsgiref.simple_server import make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.multiprocess import MultiProcessCollector


def main(port: int) -> None:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=os.environ["PROMETHEUS_MULTIPROC_DIR"])
    make_server("0.0.0.0", port, make_wsgi_app(registry)).serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9102)
