"""`/healthz` fails when reconciles wait and none finished for `stall_after` seconds, not before."""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from vlmops.liveness import ReconcileClock, serve


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_waiting_reconciles_with_none_finishing_for_too_long_is_unhealthy():
    now = Clock()
    clock = ReconcileClock(stall_after=60, now=now)
    assert clock.report()[0]
    now.t += 600  # idle for long: nothing waits, healthy
    assert clock.report()[0]
    stuck = clock.start()
    now.t += 59
    assert clock.report()[0]
    other = clock.start()
    now.t += 2
    healthy, details = clock.report()
    assert not healthy and details["inFlight"] == 2 and details["oldestWaitingSeconds"] == 61.0
    clock.finish(other)  # one finished: the operator is making progress again
    assert clock.report()[0]
    now.t += 61
    assert not clock.report()[0]
    clock.finish(stuck)
    assert clock.report()[0]


def test_the_endpoint_answers_503_with_details_when_stalled():
    now = Clock()
    clock = ReconcileClock(stall_after=10, now=now)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = serve(port, clock)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200 and json.loads(r.read())["healthy"] is True
        clock.start()
        now.t += 11
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
            raise AssertionError("expected 503")
        except urllib.error.HTTPError as e:
            assert e.code == 503 and json.loads(e.read())["inFlight"] == 1
    finally:
        server.shutdown()
        server.server_close()
