"""Helm's rendered NOTES.txt for a set of values (tests/chart/helm_render.py returns only the manifest).

Same emulator and Helm library as helm_render.py, plus the kinds of optional templates it does not declare
(the Trainer v2 ClusterTrainingRuntime). Started with HELM_DRIVER=memory (the Go library reads it at load);
one JSON request per stdin line ({"values": {...}, "namespace": "ns", "release": "r"}), one JSON reply per
stdout line ({"ok": true, "notes": "..."} / {"ok": false, "error": "..."}).
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chart"))
import helm_render  # noqa: E402

EXTRA = [("trainer.kubeflow.org/v1alpha1/clustertrainingruntimes", "ClusterTrainingRuntime", False)]


async def _notes(req: dict) -> dict:
    import helm_sdkpy
    from kmock import ResourceInfo, Server

    namespace = req.get("namespace", "vlmops-system")
    emu = helm_render._emulator()
    for key, kind, namespaced in EXTRA:
        emu.resources[key] = ResourceInfo(kind=kind, namespaced=namespaced, singular=kind.lower(),
                                          verbs={"get", "list", "watch", "create", "patch", "update", "delete"})
    async with emu, Server(emu) as srv:
        cfg = helm_sdkpy.Configuration(namespace=namespace,
                                       kubeconfig=helm_render._kubeconfig(str(srv.url).rstrip("/"), namespace))
        try:
            result = await helm_sdkpy.Install(cfg).run(req.get("release", "vlmops"), helm_render.CHART,
                                                       values=req.get("values") or {}, wait=False, timeout=60)
        except Exception as e:  # noqa: BLE001 - the message is the answer
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}
        return {"ok": True, "notes": (result.get("info") or {}).get("notes", "")}


def main() -> int:
    if os.environ.get("HELM_DRIVER") != "memory":
        print(json.dumps({"ok": False, "error": "start me with HELM_DRIVER=memory"}), flush=True)
        return 2
    loop = asyncio.new_event_loop()
    for line in sys.stdin:
        if line.strip():
            sys.stdout.write(json.dumps(loop.run_until_complete(_notes(json.loads(line)))) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
