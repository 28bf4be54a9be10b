"""`vlmops run`: validate every CR first, then reconcile them in dependency order, locally."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

from ..builders import BuildContext
from ..kinds import KINDS, references
from ..builders.uris import resolve_uris
from ..manifests import Doc, validate, with_defaults
from ..reconciler import reconcile
from .kube import LocalKube
from .state import Workdir

NAMESPACE = "local"
class RunError(Exception):
    pass


@dataclass
class RunResult:
    order: list[tuple[str, str]]
    phases: dict[tuple[str, str], str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def order(docs: list[Doc]) -> list[tuple[str, str]]:
    """Topological order over references; errors name unknown references and cycles."""
    keys = {d.key for d in docs}
    deps: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for d in docs:
        refs = references(d.obj)
        missing = [r for r in refs if r not in keys]
        if missing:
            raise RunError(f"{d.key[0]}/{d.key[1]} references " + ", ".join(f"{k}/{n}" for k, n in missing)
                           + ", which is not defined in the given files")
        deps[d.key] = refs
    return topo_order(deps)


def topo_order(deps: dict[tuple[str, str], list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """Inputs before the CRs that read them (references outside `deps` are ignored)."""
    out: list[tuple[str, str]] = []
    state: dict[tuple[str, str], int] = {}

    def visit(k: tuple[str, str], path: list[tuple[str, str]]) -> None:
        if state.get(k) == 2 or k not in deps:
            return
        if state.get(k) == 1:
            raise RunError("reference cycle: " + " -> ".join(f"{a}/{b}" for a, b in path + [k]))
        state[k] = 1
        for dep in deps[k]:
            visit(dep, path + [k])
        state[k] = 2
        out.append(k)

    for k in deps:
        visit(k, [])
    return out


def ordered_crs(workdir: Workdir) -> list[dict[str, Any]]:
    """The workdir's CRs, inputs first (tables, the report and loss curves read in this order)."""
    by_key = {(o["kind"], o["metadata"]["name"]): o for o in workdir.crs()}
    deps = {k: references(o) for k, o in by_key.items()}
    return [by_key[k] for k in topo_order(deps)]


def run(docs: list[Doc], workdir: Workdir, storage: str | None = None, parallel: int = 2,
        ctx: BuildContext | None = None, on_event: Callable[[str, str], None] | None = None,
        only: set[str] | None = None) -> RunResult:
    if not docs:
        raise RunError("no vlmops.dev/v1alpha1 resources found in the given files")
    problems = []
    for d in docs:
        problems += [f"{d.key[0]}/{d.key[1]} ({d.source}): {e}" for e in validate(d)]
    seen: dict[tuple[str, str], str] = {}
    for d in docs:
        if d.key in seen:
            problems.append(f"{d.key[0]}/{d.key[1]} defined twice ({seen[d.key]} and {d.source})")
        seen[d.key] = d.source
    if problems:
        raise RunError("invalid resources, nothing was started:\n  " + "\n  ".join(problems))
    plan_order = order(docs)
    storage = storage or f"file://{workdir.storage}"
    kube = LocalKube(workdir, parallel=parallel, on_event=on_event)
    by_key = {d.key: d for d in docs}
    for key in plan_order:
        obj = with_defaults(copy.deepcopy(by_key[key].obj))
        obj["metadata"]["namespace"] = NAMESPACE
        obj["spec"] = resolve_uris(obj["spec"], storage)
        kube.put_cr(obj)
    result = RunResult(plan_order)
    for kind, name in plan_order:
        if only and name not in only:
            continue
        _forget_failed_children(kube, kind, name)
        executed = _drive(kube, kind, name, ctx or BuildContext())
        obj = kube.get_cr(kind, NAMESPACE, name) or {}
        phase = (obj.get("status") or {}).get("phase") or "Pending"
        result.phases[(kind, name)] = phase
        if on_event and not executed and phase in ("Ready", "Succeeded"):
            on_event("skip", f"{kind}/{name}: already {phase}")
        if phase == "Failed":
            result.failed.append(f"{kind}/{name}: {(obj.get('status') or {}).get('message')}")
            break  # dependents cannot start; finished work stays recorded for the next run
    return result


def _drive(kube: LocalKube, kind: str, name: str, ctx: BuildContext) -> int:
    """Reconcile, run what the reconcile created (or a killed run left unfinished), repeat until
    the CR settles: the same Pending -> Running -> Ready sequence the cluster goes through.
    Returns how many children were executed (0: the CR was already settled)."""
    executed = 0
    for _ in range(100):
        reconcile(kube, kind, NAMESPACE, name, ctx)
        pending = kube.unfinished_children(kind, name)
        if not pending:
            return executed
        for child in pending:
            kube.execute(child)
        executed += len(pending)
    raise RunError(f"{kind}/{name} did not settle after 100 reconciles")


def _forget_failed_children(kube: LocalKube, kind: str, name: str) -> None:
    """Locally, running again is the retry: drop records of failed children so they run anew."""
    obj = kube.get_cr(kind, NAMESPACE, name) or {}
    for c in (obj.get("status") or {}).get("children") or []:
        if c.get("phase") == "Failed":
            kube.wd.child_path(c["kind"], c["name"]).unlink(missing_ok=True)
            kube.wd.pods_path(c["name"]).unlink(missing_ok=True)


def status_rows(workdir: Workdir) -> list[dict[str, Any]]:
    rows = []
    for obj in ordered_crs(workdir):
        st = obj.get("status") or {}
        kind = KINDS[obj["kind"]]
        rows.append({"kind": kind.short, "name": obj["metadata"]["name"], "phase": st.get("phase") or "Pending",
                     "detail": kind.status_detail(st), "message": st.get("message") or ""})
    return rows


def lineage(wd: Workdir, name: str) -> list[dict[str, Any]]:
    crs = {o["metadata"]["name"]: o for o in wd.crs()}
    by_key = {(o["kind"], o["metadata"]["name"]): o for o in crs.values()}
    if name not in crs:
        raise KeyError(name)
    chain: list[dict[str, Any]] = []

    def walk(obj: dict[str, Any], depth: int) -> None:
        st = obj.get("status") or {}
        out = st.get("output") or {}
        chain.append({"depth": depth, "kind": obj["kind"], "name": obj["metadata"]["name"],
                      "phase": st.get("phase"), "uri": out.get("uri"), "digest": out.get("digest"),
                      "inputs": st.get("inputs")})
        for ref in references(obj):
            if ref in by_key:
                walk(by_key[ref], depth + 1)

    walk(crs[name], 0)
    return chain
