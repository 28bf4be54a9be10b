"""`vlmops run`, `vlmops status`, `vlmops lineage`: the local runner's commands."""
from __future__ import annotations

import argparse
import functools

from .state import Workdir

_STYLE = {"start": "cyan", "progress": "dim", "done": "green", "failed": "bold red", "skip": "dim"}


def add_commands(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run CRs locally (no cluster), in dependency order")
    r.add_argument("-f", "--file", action="append", required=True, help="file or directory (repeatable)")
    r.add_argument("--workdir", default=".vlmops-work")
    r.add_argument("--storage", help="storage prefix for relative URIs (default file://<workdir>/storage)")
    r.add_argument("--parallel", type=int, default=2, help="shards run at once (Indexed Jobs)")
    r.add_argument("--only", action="append", help="reconcile only these CR names (repeatable)")
    r.add_argument("--no-report", action="store_true")
    r.set_defaults(fn=_cmd_run)

    s = sub.add_parser("status", help="the local runner's CR table (like `kubectl get vlmops`)")
    s.add_argument("--workdir", default=".vlmops-work")
    s.set_defaults(fn=_cmd_status)

    lg = sub.add_parser("lineage", help="the chain of outputs behind a CR, by content digest, down to the raw inputs")
    lg.add_argument("name")
    lg.add_argument("--workdir", default=".vlmops-work")
    lg.add_argument("--verify", action="store_true", help="recompute every digest it can reach (exit 1 on a mismatch)")
    lg.add_argument("--json", action="store_true", help="print the chain as JSON")
    lg.set_defaults(fn=_cmd_lineage)

    d = sub.add_parser("diff", help="which identity inputs differ between two runs: two CRs, or every CR of "
                                    "two workdirs")
    d.add_argument("names", nargs="*", help="CR A [CR B] (B defaults to A, in --workdir-b); none: every CR")
    d.add_argument("--workdir", default=".vlmops-work")
    d.add_argument("--workdir-b", default=None, help="the other run's workdir (default: --workdir)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(fn=_cmd_diff)


@functools.cache
def _console():
    """stderr, never wrapped (error lines stay greppable); rich is imported only by commands that print."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def _event(what: str, message: str) -> None:
    _console().print(f"[{_STYLE.get(what, '')}]{what:>8}[/] {message}")


class _LiveTable:
    """On a terminal: the CR table (like `kubectl get vlmops -w`) redrawn on every event, with the
    latest progress line under it; finished events still scroll above. Elsewhere: event lines."""

    def __init__(self, wd: Workdir):
        from rich.live import Live

        self.wd, self.activity = wd, ""
        self.live = Live(self._render(), console=_console(), refresh_per_second=4, transient=True)

    def _render(self):
        from rich.console import Group
        from rich.text import Text

        return Group(_table(self.wd), Text(self.activity, style="cyan"))

    def __call__(self, what: str, message: str) -> None:
        if what in ("done", "failed", "skip"):
            self.live.console.print(f"[{_STYLE.get(what, '')}]{what:>8}[/] {message}")
        self.activity = f"{what}: {message}"
        self.live.update(self._render())

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        return self.live.__exit__(*exc)


def _interrupt(signum, frame) -> None:
    """SIGTERM (kill, CI timeouts) unwinds like Ctrl-C, so running pods are taken down with us."""
    raise KeyboardInterrupt


def _cmd_run(args: argparse.Namespace) -> int:
    import signal

    from ..manifests import ManifestError, load, ours
    from .runner import RunError, run

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        docs = ours(load(args.file))
        wd = Workdir(args.workdir)
        live = _LiveTable(wd) if _console().is_terminal else None
        with live or _nothing():
            result = run(docs, wd, storage=args.storage, parallel=args.parallel, on_event=live or _event,
                         only=set(args.only) if args.only else None)
    except (ManifestError, RunError) as e:
        _console().print(f"[bold red]error:[/] {e}")
        return 2
    except KeyboardInterrupt:
        _console().print("[yellow]interrupted:[/] finished steps are kept; run the same command again to resume")
        return 130
    _print_table(wd)
    if not args.no_report:
        from .report import write_report

        path = write_report(wd)
        _console().print(f"report: {path}")
    if result.failed:
        for f in result.failed:
            _console().print(f"[bold red]failed:[/] {f}")
        return 1
    return 0


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def _print_table(wd: Workdir) -> None:
    from rich.console import Console

    Console().print(_table(wd))


def _table(wd: Workdir):
    from rich.table import Table

    from .runner import status_rows

    t = Table(title=f"vlmops ({wd.root})")
    for col in ("KIND", "NAME", "PHASE", "DETAIL", "MESSAGE"):
        t.add_column(col, overflow="fold")
    for row in status_rows(wd):
        color = {"Failed": "red", "Ready": "green", "Succeeded": "green"}.get(row["phase"], "yellow")
        t.add_row(row["kind"], row["name"], f"[{color}]{row['phase']}[/]", row["detail"], row["message"][:120])
    return t


def _cmd_status(args: argparse.Namespace) -> int:
    wd = Workdir(args.workdir)
    if not wd.crs():
        _console().print(f"no CRs recorded in {wd.root}")
        return 1
    _print_table(wd)
    return 0


def _cmd_lineage(args: argparse.Namespace) -> int:
    import json

    from .. import lineage

    wd = Workdir(args.workdir)
    try:
        root = lineage.chain(wd.crs(), args.name)
    except KeyError:
        _console().print(f"[bold red]error:[/] no CR named {args.name!r} in {wd.root}")
        return 2
    except ValueError as e:
        _console().print(f"[bold red]error:[/] {e}")
        return 2
    problems: list[str] = []
    doc = root.to_json()
    if args.verify:
        checks, problems = lineage.verify(root)
        doc["verify"] = {"checks": checks, "problems": problems}
    if args.json:
        print(json.dumps(doc, indent=1, sort_keys=True))
    else:
        print("\n".join(lineage.render(root)))
        if args.verify:
            for p in problems:
                print(f"MISMATCH {p}")
            print(f"verify: {checks} digests checked, {len(problems)} mismatch(es)")
    return 1 if problems else 0


def _cmd_diff(args: argparse.Namespace) -> int:
    import json

    from .. import lineage

    a_wd, b_wd = Workdir(args.workdir), Workdir(args.workdir_b or args.workdir)
    a_crs = {c["metadata"]["name"]: c for c in a_wd.crs()}
    b_crs = {c["metadata"]["name"]: c for c in b_wd.crs()}
    if len(args.names) > 2 or (not args.names and not args.workdir_b):
        _console().print("[bold red]error:[/] diff: give CR A [CR B], or --workdir-b to compare every CR of two runs")
        return 2
    pairs = [(args.names[0], args.names[-1])] if args.names else [(n, n) for n in sorted(set(a_crs) | set(b_crs))]
    for a, b in pairs:
        if a not in a_crs and b not in b_crs:
            _console().print(f"[bold red]error:[/] no CR named {a!r} in {a_wd.root} nor {b!r} in {b_wd.root}")
            return 2
    report = {f"{a}" if a == b else f"{a} vs {b}": lineage.diff(lineage.manifest_of(a_crs.get(a)),
                                                               lineage.manifest_of(b_crs.get(b)))
              for a, b in pairs}
    if args.json:
        print(json.dumps(report, indent=1, sort_keys=True))
    else:
        for name, diffs in report.items():
            print(f"{name}: {'same identity' if not diffs else 'differs'}")
            for line in diffs:
                print(f"  {line}")
    return 1 if any(report.values()) else 0
