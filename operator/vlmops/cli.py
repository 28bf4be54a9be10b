"""`vlmops` command line: crds, validate, render, operator, run, status, lineage, eval compare."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO_CRDS = Path(__file__).resolve().parents[2] / "crds"


def _cmd_crds(args: argparse.Namespace) -> int:
    from .crdgen import render_all, write_all

    out = Path(args.out)
    if args.check:
        stale = [n for n, text in render_all().items()
                 if not (out / n).exists() or (out / n).read_text() != text]
        extra = sorted(p.name for p in out.glob("*.yaml") if p.name not in render_all())
        if stale or extra:
            print(f"crds out of date in {out}: {', '.join(stale + extra)}; run `vlmops crds`", file=sys.stderr)
            return 1
        print(f"crds up to date ({len(render_all())} files)")
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


def _cmd_validate(args: argparse.Namespace) -> int:
    from .manifests import validate

    policy = None
    if args.config:  # the operator's config (the chart's ConfigMap): its tenancy policy applies too
        from .operator_main import load_config

        if not Path(args.config).exists():
            print(f"error: --config {args.config}: no such file", file=sys.stderr)
            return 2
        policy = load_config(args.config).policy

    docs = _load(args)
    if docs is None:
        return 2
    if not docs:
        print("error: no vlmops.dev/v1alpha1 resources found", file=sys.stderr)
        return 2
    bad = 0
    for d in docs:
        errs = validate(d, policy)
        label = f"{d.obj.get('kind')}/{(d.obj.get('metadata') or {}).get('name')} ({d.source})"
        if errs:
            bad += 1
            print(f"INVALID {label}")
            for e in errs:
                print(f"  {e}")
        else:
            print(f"ok      {label}")
    return 1 if bad else 0


def _cmd_render(args: argparse.Namespace) -> int:
    from .kinds import build, planned_status
    from .manifests import validate, with_defaults

    docs = _load(args)
    if docs is None:
        return 2
    invalid = [(d, validate(d)) for d in docs]
    invalid = [(d, e) for d, e in invalid if e]
    if invalid:
        for d, errs in invalid:
            print(f"error: {d.source}: " + "; ".join(errs), file=sys.stderr)
        return 1
    objs = {d.key: with_defaults(d.obj) for d in docs}
    inputs = {}
    for key, obj in objs.items():
        if obj.get("status") or args.strict_inputs:
            inputs[key] = obj
        else:
            inputs[key] = {**obj, "status": planned_status(obj)}
    out = []
    for key, obj in objs.items():
        plan = build(obj, inputs)
        if plan.invalid:
            print(f"error: {key[0]}/{key[1]}: " + "; ".join(plan.invalid), file=sys.stderr)
            return 1
        if plan.waiting_for:
            out.append(f"# {key[0]}/{key[1]}: waiting for " + "; ".join(plan.waiting_for) + "\n")
            continue
        for step in plan.steps:
            for m in [*step.extra, step.manifest]:
                out.append(f"# {key[0]}/{key[1]} step {step.name}\n" + yaml.safe_dump(m, sort_keys=False))
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
    import subprocess

    # The evaluation job's own CLI (same flags, --help, exit codes); the operator never imports job code.
    return subprocess.call([sys.executable, "-m", "vlmops_jobs.evaluate", "compare", *rest])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["eval", "compare"]:  # every flag (--help too) belongs to the job's compare step
        return _eval_compare(argv[2:])
    p = argparse.ArgumentParser(prog="vlmops", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("crds", help="generate CRD YAML from the API types")
    c.add_argument("--out", default=str(REPO_CRDS))
    c.add_argument("--check", action="store_true", help="fail if the files differ from the API types")
    c.set_defaults(fn=_cmd_crds)

    v = sub.add_parser("validate", help="check CRs against the CRD schemas and cross-field rules")
    v.add_argument("-f", "--file", action="append", required=True, help="file or directory (repeatable)")
    v.add_argument("--config", default=None,
                   help="the operator's config.yaml (chart ConfigMap): also check the cluster's policy")
    v.set_defaults(fn=_cmd_validate)

    r = sub.add_parser("render", help="print the child manifests the operator would create")
    r.add_argument("-f", "--file", action="append", required=True)
    r.add_argument("--strict-inputs", action="store_true",
                   help="only treat inputs as ready if their status (in the files) says so")
    r.set_defaults(fn=_cmd_render)

    o = sub.add_parser("operator", help="run the Kubernetes operator")
    o.add_argument("--namespace", action="append", help="watch this namespace (repeatable)")
    o.add_argument("--all-namespaces", action="store_true")
    o.add_argument("--metrics-port", type=int, default=9090)
    o.add_argument("--health-port", type=int, default=8080)
    o.add_argument("--config", default="/etc/vlmops/config.yaml")
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

    args = p.parse_args(argv)
    if args.cmd == "operator" and not args.namespace and not args.all_namespaces:
        p.error("operator: give --namespace NS (repeatable) or --all-namespaces")
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
