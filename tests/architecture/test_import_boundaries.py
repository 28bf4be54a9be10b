"""The house plan, checked: operator and jobs meet only in the contract package, no import cycles,
and a kind's name appears only where the kind is defined."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"vlmops": ROOT / "operator" / "vlmops", "vlmops_jobs": ROOT / "jobs" / "vlmops_jobs",
            "vlmops_contract": ROOT / "jobs" / "vlmops_contract"}
KIND_NAMES = ("BalancedCorpus", "PackedDataset", "VLMTrainingStage", "EvalSuite", "VLMRLStage")


def _module_name(package: str, path: Path) -> str:
    rel = path.relative_to(PACKAGES[package]).with_suffix("")
    parts = [package, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    found = {}
    for package, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            found[_module_name(package, path)] = (path, ast.parse(path.read_text(), str(path)))
    return found


MODULES = _modules()


def _imports(name: str, tree: ast.Module) -> list[str]:
    """Every module this one imports, anywhere in it (lazy imports included), as absolute names."""
    is_package = MODULES[name][0].name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[: len(here) - node.level + 1]) if node.level else ""
            mod = ".".join(p for p in (base, node.module or "") if p)
            # `from pkg import submodule` imports the submodule
            out += [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]
    return out


def _internal(target: str) -> str | None:
    """The module of ours an import resolves to (longest known prefix), or None (not ours)."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in MODULES:
            return ".".join(parts[:i])
    return None


def test_the_operator_and_the_jobs_share_only_the_contract_package():
    crossings = []
    for name, (path, tree) in MODULES.items():
        top = name.split(".")[0]
        for target in _imports(name, tree):
            other = target.split(".")[0]
            if {top, other} == {"vlmops", "vlmops_jobs"}:
                crossings.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not crossings, "\n".join(crossings)


def test_the_contract_package_needs_nothing_but_the_standard_library():
    outside = []
    for name, (path, tree) in MODULES.items():
        if not name.startswith("vlmops_contract"):
            continue
        for target in _imports(name, tree):
            top = target.split(".")[0]
            if top not in sys.stdlib_module_names and top != "vlmops_contract":
                outside.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not outside, "\n".join(outside)


def _cycle() -> list[str] | None:
    graph = {name: sorted({m for t in _imports(name, tree) if (m := _internal(t)) and m != name})
             for name, (_, tree) in MODULES.items()}
    # A package's __init__ importing its own submodules is how packages work, not a cycle.
    graph = {n: [m for m in deps if not m.startswith(n + ".")] for n, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in graph[n]:
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if not state.get(m) and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in graph:
        if not state.get(n) and (found := visit(n)):
            return found
    return None


def test_no_module_imports_itself_back_through_others():
    cycle = _cycle()
    assert cycle is None, " -> ".join(cycle)


def test_a_kind_is_named_only_in_its_api_types_builder_and_kinds_module():
    """Everything else iterates `vlmops.kinds.KINDS`: no `if kind == "EvalSuite"` anywhere."""
    allowed = ("vlmops.api.", "vlmops.kinds.", "vlmops.builders.")
    named = []
    for name, (path, tree) in MODULES.items():
        if not name.startswith("vlmops.") or name.startswith(allowed):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in KIND_NAMES:
                named.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not named, "\n".join(named)


def test_the_kind_table_is_every_module_in_kinds_in_pipeline_order():
    from vlmops.kinds import KINDS

    modules = {p.stem for p in (PACKAGES["vlmops"] / "kinds").glob("*.py")} - {"__init__", "kind"}
    assert len(KINDS) == len(modules) == 5
    assert list(KINDS) == list(KIND_NAMES)
    for kind in KINDS.values():
        assert kind.final_step and kind.build.__module__ == f"vlmops.builders.{_stem(kind.build.__module__)}"


def _stem(module: str) -> str:
    return module.rsplit(".", 1)[-1]


@pytest.mark.parametrize("package", ["vlmops_jobs.pack", "vlmops_jobs.balance", "vlmops_jobs.evaluate",
                                     "vlmops_jobs.train", "vlmops_jobs.rl"])
def test_every_job_has_the_same_shape(package):
    """`python -m vlmops_jobs.<job> <step>`: one JOB, one module per step with add_arguments and run."""
    import importlib

    from vlmops_jobs.common.cli import Job

    job = importlib.import_module(package).JOB
    assert isinstance(job, Job) and job.package == package
    main = (PACKAGES["vlmops_jobs"] / package.split(".")[1] / "__main__.py").read_text()
    assert "JOB.main()" in main
    for step in job.steps:
        module = MODULES[f"{package}.{step}"][1]
        defined = {n.name for n in module.body if isinstance(n, ast.FunctionDef)}
        assert {"add_arguments", "run"} <= defined, f"{package}.{step}"


def test_the_cluster_client_the_local_store_and_the_test_fake_all_implement_kubeapi_and_render_its_reads():
    import importlib.util
    import inspect

    from vlmops.cli import _Offline
    from vlmops.kube import Kube
    from vlmops.kubeapi import READS, KubeAPI, KubeReader
    from vlmops.local.kube import LocalKube

    spec = importlib.util.spec_from_file_location("fake_api", ROOT / "tests" / "reconcile" / "fake_api.py")
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    calls = {n: inspect.signature(f) for proto in (KubeReader, KubeAPI) for n, f in vars(proto).items()
             if callable(f) and not n.startswith("_")}
    assert len(calls) == 9 and set(READS) < set(calls)
    impls = [(impl, calls) for impl in (Kube, LocalKube, fake.FakeKube)]
    impls.append((_Offline, {n: calls[n] for n in READS}))  # render/validate: the reads only
    for impl, want in impls:
        for name, sig in want.items():
            have = inspect.signature(getattr(impl, name))
            assert list(have.parameters) == list(sig.parameters), f"{impl.__name__}.{name}{have} != {sig}"


def test_the_operator_runs_with_the_contract_package_and_no_job_code(tmp_path):
    """What the operator image holds (operator/ + jobs/vlmops_contract/): every operator module
    imports, and `vlmops render` works."""
    import shutil
    import subprocess

    shutil.copytree(PACKAGES["vlmops_contract"], tmp_path / "vlmops_contract")
    env = {"PYTHONPATH": f"{ROOT / 'operator'}:{tmp_path}", "PATH": "/usr/bin:/bin"}
    modules = [n for n in MODULES if n.split(".")[0] == "vlmops" and not n.endswith("__main__")]
    code = f"import importlib\nfor m in {modules!r}: importlib.import_module(m)\n" \
           "import importlib.util; assert importlib.util.find_spec('vlmops_jobs') is None"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "vlmops", "render", "-f", str(ROOT / "examples" / "llava-ov-1.5")],
                       env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "PyTorchJob" in r.stdout, r.stderr[-2000:]
