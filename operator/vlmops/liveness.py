"""`/healthz` that means something: unhealthy when reconciles are waiting but none has finished for
`stall_after` seconds (a wedged worker pool, API calls that never return), not merely "process up"."""
from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ReconcileClock:
    """In-flight reconciles (queued on a lock or running) and when the last one finished."""

    def __init__(self, stall_after: float, now=time.monotonic):
        self.stall_after, self._now = stall_after, now
        self._ids = itertools.count()
        self._in_flight: dict[int, float] = {}
        self._last_finished = now()
        self._guard = threading.Lock()

    def start(self) -> int:
        with self._guard:
            token = next(self._ids)
            self._in_flight[token] = self._now()
            return token

    def finish(self, token: int) -> None:
        with self._guard:
            self._in_flight.pop(token, None)
            self._last_finished = self._now()

    def report(self) -> tuple[bool, dict]:
        """(healthy, details): stalled when the oldest waiting reconcile and the last finished one
        are both older than `stall_after`."""
        with self._guard:
            now = self._now()
            oldest = min(self._in_flight.values(), default=None)
            idle = now - self._last_finished
            stalled = oldest is not None and now - oldest > self.stall_after and idle > self.stall_after
            return not stalled, {"inFlight": len(self._in_flight), "secondsSinceLastFinished": round(idle, 1),
                                 "oldestWaitingSeconds": None if oldest is None else round(now - oldest, 1)}


def serve(port: int, clock: ReconcileClock) -> ThreadingHTTPServer:
    """GET /healthz: 200 with details, 503 when stalled. Runs in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.rstrip("/") != "/healthz":
                self.send_error(404)
                return
            healthy, details = clock.report()
            body = json.dumps({"healthy": healthy, **details}).encode()
            self.send_response(200 if healthy else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:  # probes every few seconds: keep the log for reconciles
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="healthz").start()
    return server
