"""`vlmops run`, `vlmops status`, `vlmops lineage`: the local runner's commands."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from .state import Workdir

console = Console(stderr=True, soft_wrap=True)  # never wrap: error lines stay greppable
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

    lg = sub.add_parser("lineage", help="print the artifact chain behind a CR")
    lg.add_argument("name")
    lg.add_argument("--workdir", default=".vlmops-work")
    lg.set_defaults(fn=_cmd_lineage)


def _event(what: str, message: str) -> None:
    console.print(f"[{_STYLE.get(what, '')}]{what:>8}[/] {message}")


class _LiveTable:
    """On a terminal: the CR table (like `kubectl get vlmops -w`) redrawn on every event, with the
    latest progress line under it; finished events still scroll above. Elsewhere: event lines."""

    def __init__(self, wd: Workdir):
        from rich.live import Live

        self.wd, self.activity = wd, ""
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=True)

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
        live = _LiveTable(wd) if console.is_terminal else None
        with live or _nothing():
            result = run(docs, wd, storage=args.storage, parallel=args.parallel, on_event=live or _event,
                         only=set(args.only) if args.only else None)
    except (ManifestError, RunError) as e:
        console.print(f"[bold red]error:[/] {e}")
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/] finished steps are kept; run the same command again to resume")
        return 130
    _print_table(wd)
    if not args.no_report:
        from .report import write_report

        path = write_report(wd)
        console.print(f"report: {path}")
    if result.failed:
        for f in result.failed:
            console.print(f"[bold red]failed:[/] {f}")
        return 1
    return 0


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def _print_table(wd: Workdir) -> None:
    Console().print(_table(wd))


def _table(wd: Workdir) -> Table:
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
        console.print(f"no CRs recorded in {wd.root}")
        return 1
    _print_table(wd)
    return 0


def _cmd_lineage(args: argparse.Namespace) -> int:
    from .runner import lineage

    wd = Workdir(args.workdir)
    try:
        chain = lineage(wd, args.name)
    except KeyError:
        console.print(f"[bold red]error:[/] no CR named {args.name!r} in {wd.root}")
        return 2
    for link in chain:
        pad = "  " * link["depth"]
        print(f"{pad}{link['kind']}/{link['name']} [{link['phase']}]")
        print(f"{pad}  output: {link['uri']}  digest: {link['digest']}")
    return 0
