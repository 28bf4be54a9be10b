"""Rank 0's progress: progress.json under --output and the Prometheus gauges."""
from __future__ import annotations


def test_progress_json_and_prometheus_gauges_report_the_same_rates(tmp_path):
    import socket
    import urllib.request

    from vlmops_jobs.common import storage
    from vlmops_jobs.train.progress import Progress

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    out = f"file://{tmp_path}/out"
    p = Progress(out, total_steps=4, metrics_port=port, every=2)
    p.update(1, 3.5, tokens=1000, samples=10, flops=1e12, dt=0.5, world=2, peak_tflops=1.0)
    assert not storage.exists(f"{out}/progress.json")  # every=2
    p.checkpoint = {"latest": "s3://b/ck/iter_0000002", "step": 2}
    p.update(2, 3.0, tokens=1000, samples=10, flops=1e12, dt=0.5, world=2, peak_tflops=1.0)
    doc = storage.read_json(f"{out}/progress.json")
    assert doc["step"] == 2 and doc["totalSteps"] == 4 and doc["loss"] == 3.0
    assert doc["tokensPerSecond"] == 2000.0 and doc["samplesPerSecond"] == 20.0 and doc["mfu"] == 1.0
    assert doc["checkpoint"]["step"] == 2
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for name, value in (("vlmops_train_step", 2.0), ("vlmops_train_total_steps", 4.0), ("vlmops_train_loss", 3.0),
                        ("vlmops_train_tokens_per_second", 2000.0), ("vlmops_train_samples_per_second", 20.0),
                        ("vlmops_train_mfu", 1.0)):
        assert f"{name} {value}" in text, name
