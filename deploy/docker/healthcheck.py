"""Container health check: GET /health of this container's service answers 200 (exit 0)."""

import os
import sys
import urllib.request

DEFAULT_PORTS = {"gateway": 8082, "inventory": 8080, "billing": 8081}

service = os.environ["SERVICE"]
port = os.environ.get(f"{service.upper()}_PORT", DEFAULT_PORTS[service])
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as error:  # URLError, HTTPError (503) and timeouts are all OSErrors
    print(f"{service} /health: {error}", file=sys.stderr)
    sys.exit(1)
