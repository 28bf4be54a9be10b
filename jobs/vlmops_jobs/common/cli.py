"""Every job's command line has one shape: `python -m vlmops_jobs.<job> <step> [flags]`.

A step is a module of the job's package with a docstring (its help: the first line), an
`add_arguments(parser)` and a `run(args) -> dict` returning the result line's content. Only the
chosen step's module is imported, so `--help` and usage errors never load torch or faiss.

Exit codes (`vlmops_contract.result`): 0 with the result line printed last; 2 for bad input
(`JobError` or an argparse usage error: one `error: ...` line, nothing written); 1 for
`StepFailed` (the step ran but failed: its partial result line is printed, then the error).
A job with a single step (train) takes its flags without naming the step.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Any

from vlmops_contract.result import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK

from .result import JobError, emit_result, exit_now


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors are bad input too: one line, exit 2
        raise JobError(f"arguments: {message}")


class StepFailed(Exception):
    """The step ran and failed; `result` (partial) is still reported before exiting 1."""

    def __init__(self, message: str, result: dict[str, Any] | None = None):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Job:
    package: str              # "vlmops_jobs.pack"
    steps: tuple[str, ...]    # step names = module names in the package, in pipeline order
    description: str = ""

    @property
    def prog(self) -> str:
        return f"python -m {self.package}"

    def step_module(self, step: str):
        return importlib.import_module(f"{self.package}.{step}")

    def parser(self, step: str) -> ArgumentParser:
        module = self.step_module(step)
        prog = self.prog if len(self.steps) == 1 else f"{self.prog} {step}"
        p = ArgumentParser(prog=prog, description=(module.__doc__ or "").strip())
        module.add_arguments(p)
        return p

    def _usage(self) -> str:
        return f"usage: {self.prog} {{{','.join(self.steps)}}} [flags]  (--help after the step)"

    def run(self, argv: list[str] | None = None) -> int:
        argv = list(sys.argv[1:] if argv is None else argv)
        if len(self.steps) == 1:
            step, rest = self.steps[0], argv
        elif argv and argv[0] in ("-h", "--help"):
            print(f"{self._usage()}\n\n{self.description}")
            return EXIT_OK
        elif not argv or argv[0] not in self.steps:
            print(f"error: arguments: step {argv[0] if argv else '(none)'!r} is not one of "
                  f"{', '.join(self.steps)}\n{self._usage()}", file=sys.stderr)
            return EXIT_BAD_INPUT
        else:
            step, rest = argv[0], argv[1:]
        try:
            args = self.parser(step).parse_args(rest)
            result = self.step_module(step).run(args)
        except JobError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except StepFailed as e:
            if e.result is not None:
                emit_result(e.result)
            print(f"error: {e}", file=sys.stderr)
            return EXIT_FAILED
        if result is not None:
            emit_result(result)
        return EXIT_OK

    def main(self) -> None:
        """`if __name__ == "__main__": JOB.main()` in the job's `__main__.py`."""
        exit_now(self.run())
