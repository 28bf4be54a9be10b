"""`vlmops` command line: crds, validate, render, operator, run, status, lineage, diff, eval compare.

Each command imports what it needs when it runs (kopf and prometheus only for `operator`), so
`--help` and the offline commands start fast.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
REPO_CRDS = REPO / "crds"


def _cmd_crds(args: argparse.Namespace) -> int:
    from .crdgen import render_all, write_all

    out = Path(args.out)
    if args.check:
        wanted = render_all()  # once: rendering the four CRDs is most of this command's time
        stale = [n for n, text in wanted.items() if not (out / n).exists() or (out / n).read_text() != text]
        extra = sorted(p.name for p in out.glob("*.yaml") if p.name not in wanted)
        if stale or extra:
            print(f"crds out of date in {out}: {', '.join(stale + extra)}; run `vlmops crds`", file=sys.stderr)
            return 1
        print(f"crds up to date ({len(wanted)} files)")
        return 0
    for p in write_all(out):
        print(p)
    return 0


def _load(args: argparse.Namespace):
    from .manifests import ManifestError, load, ours

    try:
        return ours(load(args.file))
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def _context(args: argparse.Namespace):
    """The operator's defaults from --config (its config file, or Helm values over the chart's);
    None after printing the error."""
    from .config import ConfigError, load_context

    if not args.config:
        from .builders import BuildContext

        return BuildContext()
    for f in args.config:
        if not Path(f).is_file():
            print(f"error: --config {f}: no such file", file=sys.stderr)
            return None
    try:
        return load_context(args.config, Path(args.chart))
    except ConfigError as e:
        print(f"error: --config {e}", file=sys.stderr)
        return None


def _cmd_validate(args: argparse.Namespace) -> int:
    from .kinds import KINDS
    from .manifests import validate, with_defaults
    from .reconciler import observe

    ctx = _context(args)
    if ctx is None:
        return 2
    docs = _load(args)
    if docs is None:
        return 2
    if not docs:
        print("error: no vlmops.dev/v1alpha1 resources found", file=sys.stderr)
        return 2
    problems = [validate(d) for d in docs]
    kube = _Offline({d.key: with_defaults(d.obj) for d, errs in zip(docs, problems) if not errs}, ctx, strict=False)
    bad = 0
    for d, errs in zip(docs, problems):
        if not errs and args.config:  # the cluster's view: the operator's own checks (locations, policy)
            obj = kube.objs[d.key]
            snap = observe(kube, KINDS[d.key[0]], obj["metadata"]["namespace"], d.key[1], ctx)
            errs = snap.problem.split("; ") if snap.problem else []
        label = f"{d.obj.get('kind')}/{(d.obj.get('metadata') or {}).get('name')} ({d.source})"
        if errs:
            bad += 1
            print(f"INVALID {label}")
            for e in errs:
                print(f"  {e}")
        else:
            print(f"ok      {label}")
    return 1 if bad else 0


class _Offline:
    """The API server as `vlmops render` sees it (a `kubeapi.KubeReader`, all that `observe` reads):
    the CRs of the files, and no children yet. An input without a status in the files gets the
    status it will have once done (`planned_status`: its output locations), unless --strict-inputs."""

    def __init__(self, objs: dict[tuple[str, str], dict[str, Any]], ctx, strict: bool):
        self.objs, self.ctx, self.strict = objs, ctx, strict

    def get_cr(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        from .builders.uris import resolve_uris
        from .kinds import planned_status

        obj = self.objs.get((kind, name))
        if obj is None or obj["metadata"].get("namespace") != namespace:
            return None
        if obj.get("status") or self.strict:
            return obj
        spec = resolve_uris(obj["spec"], self.ctx.storage_prefix) if self.ctx.storage_prefix else obj["spec"]
        return {**obj, "status": planned_status({**obj, "spec": spec})}

    def get_child(self, kind: str, namespace: str, name: str) -> None:
        return None

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        return []


def _cmd_render(args: argparse.Namespace) -> int:
    import yaml

    from .childstate import request_body
    from .kinds import KINDS
    from .manifests import validate, with_defaults
    from .reconciler import observe

    ctx = _context(args)
    if ctx is None:
        return 2
    docs = _load(args)
    if docs is None:
        return 2
    errors = [f"{d.source}: " + "; ".join(errs) for d in docs if (errs := validate(d))]
    if errors:
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        return 1
    objs = {d.key: with_defaults(d.obj) for d in docs}
    kube = _Offline(objs, ctx, args.strict_inputs)
    out = []
    for (kind, name), obj in objs.items():
        # the operator's own first half of a reconcile: locations resolved, policy, inputs, the plan
        snap = observe(kube, KINDS[kind], obj["metadata"]["namespace"], name, ctx)
        problems = [snap.problem] if snap.problem else snap.plan.invalid
        if problems:
            errors.append(f"{kind}/{name}: " + "; ".join(problems))
            continue
        if snap.plan.waiting_for:
            out.append(f"# {kind}/{name}: waiting for " + "; ".join(snap.plan.waiting_for) + "\n")
            continue
        for step in snap.plan.steps:
            for m in [*step.extra, step.manifest]:
                out.append(f"# {kind}/{name} step {step.name}\n" + yaml.safe_dump(request_body(m), sort_keys=False))
    if errors:
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        return 1
    sys.stdout.write("---\n".join(out))
    return 0


def _cmd_operator(args: argparse.Namespace) -> int:
    from .operator_main import run

    run(args.namespace or [], args.all_namespaces, args.metrics_port, args.health_port, args.config,
        args.watch_timeout, resync_interval=args.resync_interval, api_timeout=args.api_timeout,
        stall_after=args.stall_after, leader_election_namespace=args.leader_election_namespace,
        leader_election_id=args.leader_election_id, lease_duration=args.lease_duration)
    return 0


def _eval_compare(rest: list[str]) -> int:
    import importlib.util
    import os
    import subprocess

    # The evaluation job's own CLI (same flags, --help, exit codes); the operator never imports job code.
    if importlib.util.find_spec("vlmops_jobs") is None:  # the operator image holds no job code
        if {"-h", "--help"} & set(rest):
            print("usage: vlmops eval compare A [B] [options]\n\n"
                  "The evaluation job's compare step: its full help needs the job package (vlmops_jobs), which\n"
                  "this installation lacks (the eval image has it).")
            return 0
        print("error: vlmops eval compare needs the job package vlmops_jobs (the eval image has it)", file=sys.stderr)
        return 2
    # the child finds the packages this process found (an in-process caller may have extended sys.path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
    return subprocess.call([sys.executable, "-m", "vlmops_jobs.evaluate", "compare", *rest], env=env)


def _config_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--config", action="append", metavar="FILE",
                   help=f"{what}. A Helm values file (repeatable, merged in order like helm -f) or the operator's "
                        "config file (the chart's ConfigMap, key config.yaml: the file with top-level `images`)")
    p.add_argument("--chart", default=str(REPO / "charts" / "vlmops"), metavar="DIR",
                   help="the chart whose values.yaml values files apply over (default: %(default)s)")


def parser() -> argparse.ArgumentParser:
    """Every command and its flags (nothing is imported for a command until it runs)."""
    p = argparse.ArgumentParser(prog="vlmops", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("crds", help="generate CRD YAML from the API types")
    c.add_argument("--out", default=str(REPO_CRDS))
    c.add_argument("--check", action="store_true", help="fail if the files differ from the API types")
    c.set_defaults(fn=_cmd_crds)

    v = sub.add_parser("validate", help="check CRs against the CRD schemas and cross-field rules")
    v.add_argument("-f", "--file", action="append", required=True, help="file or directory (repeatable)")
    _config_args(v, "also check the cluster's policy, with relative locations resolved as the operator does")
    v.set_defaults(fn=_cmd_validate)

    r = sub.add_parser("render", help="print the child manifests the operator would create")
    r.add_argument("-f", "--file", action="append", required=True)
    r.add_argument("--strict-inputs", action="store_true",
                   help="only treat inputs as ready if their status (in the files) says so")
    _config_args(r, "render with the chart's defaults (images, storage, service account, requests, "
                    "scheduling, ...): exactly what the operator creates")
    r.set_defaults(fn=_cmd_render)

    o = sub.add_parser("operator", help="run the Kubernetes operator")
    o.add_argument("--namespace", action="append", help="watch this namespace (repeatable)")
    o.add_argument("--all-namespaces", action="store_true")
    o.add_argument("--metrics-port", type=int, default=9090)
    o.add_argument("--health-port", type=int, default=8080)
    o.add_argument("--config", default="/etc/vlmops/config.yaml",
                   help="the operator's config file (the chart's ConfigMap); absent: built-in defaults")
    o.add_argument("--watch-timeout", type=float, default=None, help=argparse.SUPPRESS)
    o.add_argument("--resync-interval", type=float, default=60.0,
                   help="seconds between reconciles of every CR that is not done (no writes when unchanged)")
    o.add_argument("--api-timeout", type=float, default=30.0, help="seconds before any API call is abandoned")
    o.add_argument("--stall-after", type=float, default=300.0,
                   help="/healthz fails when reconciles wait and none finished for this many seconds")
    o.add_argument("--leader-election-namespace", default=None,
                   help="hold a Lease in this namespace before reconciling (several replicas: one active)")
    o.add_argument("--leader-election-id", default="vlmops-operator", help="the Lease's name")
    o.add_argument("--lease-duration", type=int, default=15, help="seconds a leader's Lease lasts unrenewed (>= 3)")
    o.set_defaults(fn=_cmd_operator)

    e = sub.add_parser("eval", help="evaluation helpers")
    esub = e.add_subparsers(dest="eval_cmd", required=True)
    esub.add_parser("compare", help="compare two EvalSuites / results files (or a reference); see its --help")

    from .local import cli as local_cli  # the local runner: vlmops run / status / lineage

    local_cli.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["eval", "compare"]:  # every flag (--help too) belongs to the job's compare step
        return _eval_compare(argv[2:])
    p = parser()
    args = p.parse_args(argv)
    if args.cmd == "operator" and not args.namespace and not args.all_namespaces:
        p.error("operator: give --namespace NS (repeatable) or --all-namespaces")
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
