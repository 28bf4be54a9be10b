"""`LocalKube`: the reconciler's `KubeAPI` over workdir files; the runner then executes created children."""
from __future__ import annotations

import copy
import uuid
from typing import Any, Callable

from vlmops_contract.labels import COMPLETION_INDEX_ANNOTATION, LABEL_STEP, parent_of
from vlmops_contract.result import EXIT_BAD_INPUT

from .. import childstate, mergepatch
from ..builders.training_stage import TRAINJOB_NODE, trainjob_pod_patch
from ..childstate import TTL_PATCH
from ..conditions import now
from ..kinds import KINDS
from .executor import PodRun, run_pods
from .state import Workdir, read_json, write_json


class LocalKube:
    def __init__(self, workdir: Workdir, parallel: int = 2,
                 on_event: Callable[[str, str], None] | None = None):
        self.wd = workdir
        self.parallel = parallel
        self.on_event = on_event or (lambda what, msg: None)

    # -- CRs -------------------------------------------------------------------------------------
    def get_cr(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        p = self.wd.cr_path(kind, name)
        return read_json(p) if p.exists() else None

    def put_cr(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Apply a CR: a changed spec bumps metadata.generation, like the API server."""
        old = self.get_cr(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        new = copy.deepcopy(obj)
        meta = new["metadata"]
        if old is None:
            meta.update(generation=1, uid=str(uuid.uuid4()), creationTimestamp=now())
            new.pop("status", None)
        else:
            meta.update(uid=old["metadata"]["uid"], creationTimestamp=old["metadata"]["creationTimestamp"],
                        generation=old["metadata"]["generation"] + (old["spec"] != new["spec"]))
            new["status"] = old.get("status") or {}
            if new == old:
                return old  # unchanged: no write, like a no-op `kubectl apply`
        write_json(self.wd.cr_path(new["kind"], meta["name"]), new)
        return new

    def patch_cr_status(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        obj = self.get_cr(kind, namespace, name)
        assert obj is not None
        obj["status"] = mergepatch.apply(obj.get("status") or {}, patch)
        write_json(self.wd.cr_path(kind, name), obj)

    # -- children --------------------------------------------------------------------------------
    def get_child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        p = self.wd.child_path(kind, name)
        return read_json(p) if p.exists() else None

    def create_child(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Record the child as created and running, like the API server plus a controller that has
        just started it; `execute()` (called by the runner) then runs it and records the outcome."""
        child = copy.deepcopy(manifest)
        at = now()
        if child["kind"] == "Job":
            child["status"] = {"active": 1, "startTime": at}
        elif child["kind"] == "TrainJob":
            child["status"] = {"jobsStatus": [{"name": TRAINJOB_NODE, "active": 1, "ready": 0, "succeeded": 0,
                                               "failed": 0, "suspended": 0}]}
        else:
            child["status"] = {"startTime": at, "conditions": [
                {"type": "Created", "status": "True", "reason": "PyTorchJobCreated", "lastTransitionTime": at},
                {"type": "Running", "status": "True", "reason": "PyTorchJobRunning", "lastTransitionTime": at}]}
        write_json(self.wd.child_path(child["kind"], child["metadata"]["name"]), child)
        return child

    def unfinished_children(self, kind: str, name: str) -> list[dict[str, Any]]:
        """Children of a CR without a terminal condition: just created, or left by a killed run."""
        out = []
        for p in sorted((self.wd.root / "state" / "children").glob("*.json")):
            child = read_json(p)
            if parent_of(child["metadata"]) != (kind, name):
                continue
            if childstate.state(child).phase not in ("Succeeded", "Failed"):
                out.append(child)
        return out

    def execute(self, child: dict[str, Any]) -> dict[str, Any]:
        """Run a child's pods to completion and record its terminal status and pods."""
        name = child["metadata"]["name"]
        labels = child["metadata"].get("labels") or {}
        kind, cr_name = parent_of(child["metadata"]) or ("?", "unknown")
        parent = f"{kind}/{cr_name}"
        log_dir = self.wd.log_dir(cr_name)
        step = labels.get(LABEL_STEP, "?")
        if child["kind"] == "Job":
            spec = child["spec"]
            container = spec["template"]["spec"]["containers"][0]
            n = spec.get("completions") or 1
            indexed = spec.get("completionMode") == "Indexed"
            self.on_event("start", f"{parent}: {step} ({n} pod{'s' * (n > 1)})")
            done = [0]

            def progress(run: PodRun) -> None:
                done[0] += run.exit_code == 0
                if indexed and n > 1:
                    self.on_event("progress", f"{parent}: {step} {done[0]}/{n} shards")

            runs = run_pods(container, list(range(n)), self.parallel, log_dir, name, on_done=progress)
            child["status"] = _job_status(runs, n, indexed)
            template_labels = spec["template"]["metadata"].get("labels") or {}
        else:
            container, world, template_labels = _launcher(child)  # every node's ranks run here
            self.on_event("start", f"{parent}: {step} (torchrun, {world} local ranks)")
            with _ProgressWatch(self._output_of(kind, cr_name), lambda msg: self.on_event("progress", f"{parent}: {msg}")):
                runs = run_pods(container, [0], 1, log_dir, name, world_size=world)
            child["status"] = (_trainjob_status if child["kind"] == "TrainJob" else _pytorchjob_status)(runs[0])
        pods = [_pod(name, template_labels, r, container["name"]) for r in runs]
        write_json(self.wd.pods_path(name), pods)  # pods first: the parent reads results from them
        write_json(self.wd.child_path(child["kind"], name), child)
        failed = [r for r in runs if r.exit_code != 0]
        secs = max(r.seconds for r in runs)
        if failed:
            self.on_event("failed", f"{parent}: {step} failed (exit {failed[0].exit_code}); log: {failed[0].log}")
        else:
            self.on_event("done", f"{parent}: {step} done in {secs:.1f}s")
        return child

    def _output_of(self, kind_name: str, cr_name: str) -> str | None:
        """The parent CR's output location (where its job writes progress)."""
        kind = KINDS.get(kind_name)
        obj = self.get_cr(kind.kind, "", cr_name) if kind else None
        return kind.outputs(kind.spec.model_validate(obj["spec"]))["output"]["uri"] if obj else None

    def delete_child(self, kind: str, namespace: str, name: str) -> None:
        # Locally children run one at a time to completion, so an older generation's child is never
        # running when a new one starts; a record left by a killed run is dropped.
        self.wd.child_path(kind, name).unlink(missing_ok=True)

    def adopt_child(self, child: dict[str, Any], owner_refs: list[dict[str, Any]]) -> None:
        pass  # no garbage collector locally: ownership is implied by the workdir

    def expire_child(self, kind: str, namespace: str, name: str, seconds: int) -> None:
        # recorded like the API server would; no TTL controller runs locally, so the record stays
        child = self.get_child(kind, namespace, name)
        if child is not None:
            child = mergepatch.apply(child, TTL_PATCH[kind](seconds))
            write_json(self.wd.child_path(kind, name), child)

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        out = []
        for p in sorted((self.wd.root / "state" / "pods").glob("*.json")):
            for pod in read_json(p):
                labels = pod["metadata"].get("labels") or {}
                if all(labels.get(k) == v for k, v in selector.items()):
                    out.append(pod)
        return out

    def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str, at: str) -> None:
        with open(self.wd.root / "events.log", "a") as f:
            f.write(f"{at} {type_} {obj['kind']}/{obj['metadata']['name']} {reason}: {message}\n")


class _ProgressWatch:
    """While a training child runs, report its progress.json (step, loss, tokens/s) as it moves."""

    def __init__(self, output: str | None, emit: Callable[[str], None], every: float = 2.0):
        import threading

        self.output, self.emit, self.every = output, emit, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from .. import progress

        last = None
        while not self.stop.wait(self.every):
            doc = progress.read(self.output) if self.output else None
            if doc and doc.get("step") != last:
                last = doc.get("step")
                self.emit(f"step {doc.get('step')}/{doc.get('totalSteps')} loss {doc.get('loss')} "
                          f"{doc.get('tokensPerSecond')} tokens/s")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def _pod(child: str, labels: dict[str, str], run: PodRun, container: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{child}-{run.index}", "labels": labels,
                     "annotations": {COMPLETION_INDEX_ANNOTATION: str(run.index)}},
        "status": {"phase": "Succeeded" if run.exit_code == 0 else "Failed", "containerStatuses": [{
            "name": container, "state": {"terminated": {"exitCode": run.exit_code, "message": run.message}}}]},
    }


def _job_status(runs: list[PodRun], n: int, indexed: bool) -> dict[str, Any]:
    ok = sum(r.exit_code == 0 for r in runs)
    failed = [r for r in runs if r.exit_code != 0]
    at = now()
    st: dict[str, Any] = {"succeeded": ok, "failed": len(failed), "startTime": at}
    if failed:
        bad_input = any(r.exit_code == EXIT_BAD_INPUT for r in failed)
        reason = "PodFailurePolicy" if bad_input else "BackoffLimitExceeded"
        msg = _last_line(failed[0], "")
        st["conditions"] = [{"type": "Failed", "status": "True", "reason": reason,
                             "message": f"pod {failed[0].index}: {msg}"[:2000], "lastTransitionTime": at}]
    else:
        st["conditions"] = [{"type": "Complete", "status": "True", "reason": "Completed", "lastTransitionTime": at}]
        st["completionTime"] = at
    return st


def _last_line(run: PodRun, default: str) -> str:
    """The last line a failed pod left (its `error:` line), else `default`."""
    text = run.message.strip()
    return text.splitlines()[-1] if text else default


def _launcher(child: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """(the torchrun container, world size, pod labels) of a PyTorchJob's Master or a TrainJob's trainer."""
    spec = child["spec"]
    if child["kind"] == "TrainJob":
        t = spec["trainer"]
        container = {"name": TRAINJOB_NODE, "image": t["image"], "command": t["command"], "env": t.get("env") or []}
        labels = trainjob_pod_patch(child)["metadata"].get("labels") or {}
        return container, int(t.get("numNodes") or 1) * int(t.get("numProcPerNode") or 1), labels
    replicas = spec["pytorchReplicaSpecs"]
    master = replicas["Master"]
    nodes = sum(int(r.get("replicas") or 1) for r in replicas.values())
    return (master["template"]["spec"]["containers"][0], nodes * int(spec.get("nprocPerNode") or 1),
            master["template"]["metadata"].get("labels") or {})


def _trainjob_status(run: PodRun) -> dict[str, Any]:
    at = now()
    jobs = {"name": TRAINJOB_NODE, "active": 0, "ready": 0, "succeeded": int(run.exit_code == 0),
            "failed": int(run.exit_code != 0), "suspended": 0}
    if run.exit_code == 0:
        cond = {"type": "Complete", "status": "True", "reason": "JobsCompleted", "message": "",
                "lastTransitionTime": at}
    else:
        msg = _last_line(run, f"exit code {run.exit_code}")
        cond = {"type": "Failed", "status": "True", "reason": "TrainJobFailed", "message": msg[:2000],
                "lastTransitionTime": at}
    return {"conditions": [cond], "jobsStatus": [jobs]}


def _pytorchjob_status(run: PodRun) -> dict[str, Any]:
    at = now()
    conds = [{"type": "Created", "status": "True", "reason": "PyTorchJobCreated", "lastTransitionTime": at},
             {"type": "Running", "status": "False", "reason": "PyTorchJobRunning", "lastTransitionTime": at}]
    if run.exit_code == 0:
        conds.append({"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded",
                      "lastTransitionTime": at})
    else:
        msg = _last_line(run, f"exit code {run.exit_code}")
        conds.append({"type": "Failed", "status": "True", "reason": "PyTorchJobFailed",
                      "message": msg[:2000], "lastTransitionTime": at})
    return {"conditions": conds, "startTime": at, "completionTime": at}
