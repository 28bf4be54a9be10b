"""Dockerfile checks we can run without Docker: a hadolint-like rule subset, pinned versions that
match pyproject/lock/chart, and entrypoints that exist in the package."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib

import pytest
import yaml

from chart_helpers import CHART, ROOT

IMAGES = ROOT / "images"
# image -> the job modules it must be able to run (python -m vlmops_jobs.<module>)
MODULES = {"data": {"balance", "pack", "rl"}, "train": {"train", "rl"}, "eval": {"evaluate"}}  # rl: merge on data, select/train on train


def instructions(name: str) -> list[tuple[str, str]]:
    text = (IMAGES / name / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        out.append((op.upper(), rest.strip()))
    return out


def arg_defaults(ins) -> dict[str, str]:
    out = {}
    for op, rest in ins:
        if op == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            out.setdefault(k, v)
    return out


def expand(s: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), s)


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def lock() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


ALL = ["operator", "data", "train", "eval"]


@pytest.mark.parametrize("name", ALL)
def test_dockerfiles_follow_hadolint_rules(name):
    ins = instructions(name)
    args = arg_defaults(ins)
    stages = set()
    froms = [expand(r.split()[0], args) for op, r in ins if op == "FROM"]
    assert froms, "no FROM"
    for op, rest in ins:
        if op == "FROM":
            parts = rest.split()
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages.add(parts[2])
    for image in froms:
        if image in stages:
            continue
        assert ":" in image.rsplit("/", 1)[-1] or "@sha256:" in image, f"DL3006 untagged base {image}"
        assert not image.endswith(":latest"), f"DL3007 latest tag {image}"
    users = [r for op, r in ins if op == "USER"]
    assert users, "DL3002: no USER"
    assert users[-1].split(":")[0] not in ("root", "0"), "DL3002: last USER is root"
    env_no_cache = any(op == "ENV" and "PIP_NO_CACHE_DIR=1" in r for op, r in ins)
    for op, rest in ins:
        assert op != "ADD", "DL3020: use COPY"
        if op in ("CMD", "ENTRYPOINT"):
            assert rest.startswith("["), f"DL3025: {op} must be JSON"
        if op != "RUN":
            continue
        if "apt-get install" in rest:
            assert "--no-install-recommends" in rest, "DL3015"
            assert "apt-get update" in rest and "rm -rf /var/lib/apt/lists/*" in rest, "DL3009"
            assert "-y" in rest.split(), "DL3014"
        if re.search(r"\bpip install\b", rest):
            assert env_no_cache or "--no-cache-dir" in rest, "DL3042"
        assert "sudo " not in rest, "DL3004"
        assert not re.search(r"\bcd\s", rest), "DL3003: use WORKDIR"


@pytest.mark.parametrize("name", ALL)
def test_every_copy_source_exists(name):
    for op, rest in instructions(name):
        if op != "COPY" or rest.startswith("--from"):
            continue
        *srcs, _dst = shlex.split(rest)
        for src in srcs:
            if src.startswith("--"):
                continue
            if "*" in src:  # optional glob (README.md*): at least one other source makes the COPY valid
                continue
            assert (ROOT / src).exists(), f"{name}: COPY source {src} missing"


def test_versions_match_project_chart_and_lock():
    version = pyproject()["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version
    locked = lock()
    extras = " ".join(" ".join(v) for v in pyproject()["optional-dependencies"].values())
    for name in ALL:
        a = arg_defaults(instructions(name))
        assert a.get("VLMOPS_VERSION") == version, name
        for arg, pkg in [("MEGATRON_CORE_VERSION", "megatron-core"), ("LMMS_EVAL_VERSION", "lmms-eval"),
                         ("FAISS_VERSION", "faiss-cpu"), ("MEGATRON_ENERGON_VERSION", "megatron-energon")]:
            if arg in a:
                assert a[arg] == locked[pkg], f"{name}: {arg}={a[arg]} but lock has {pkg}=={locked[pkg]}"
                assert f"{pkg}=={a[arg]}" in extras, f"{name}: {pkg}=={a[arg]} not the pyproject pin"
    train = arg_defaults(instructions("train"))
    assert "NGC_PYTORCH_TAG" in train and "MEGATRON_CORE_VERSION" in train
    assert any(op == "FROM" and r.startswith("nvcr.io/nvidia/pytorch:") for op, r in instructions("train"))
    assert "LMMS_EVAL_VERSION" in arg_defaults(instructions("eval"))


def test_chart_default_images_are_the_built_images(default_objs):
    from chart_helpers import one

    cfg = yaml.safe_load(one(default_objs, "ConfigMap", "vlmops-config")["data"]["config.yaml"])
    version = pyproject()["version"]
    for kind in ("data", "train", "eval"):
        assert cfg["images"][kind] == f"ghcr.io/vlmops/vlmops-{kind}:{version}"
        labels = " ".join(r for op, r in instructions(kind) if op == "LABEL")
        assert f'org.opencontainers.image.title="vlmops-{kind}"' in labels
    dep = one(default_objs, "Deployment")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == f"ghcr.io/vlmops/vlmops-operator:{version}"
    op_user = [r for op, r in instructions("operator") if op == "USER"][-1]
    assert op_user.split(":")[0] == str(dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"])


def test_the_operator_image_entrypoint_exists():
    ins = instructions("operator")
    (entry,) = [r for op, r in ins if op == "ENTRYPOINT"]
    (script,) = eval(entry)  # JSON list literal
    target = pyproject()["scripts"][script]
    module, func = target.split(":")
    mod = pytest.importorskip(module)
    assert callable(getattr(mod, func))


def job_modules_in_builders() -> set[str]:
    found = set()
    for f in (ROOT / "operator" / "vlmops" / "builders").glob("*.py"):
        text = f.read_text()
        found |= set(re.findall(r"\bpy\(\s*\"(\w+)\"", text))
        found |= set(re.findall(r"vlmops_jobs\.(\w+)", text))
    return found - {""}


def test_every_job_module_exists_and_has_an_image():
    used = job_modules_in_builders()
    assert used, "found no job modules in the builders"
    covered = set().union(*MODULES.values())
    assert used <= covered, f"builders run modules no image is declared for: {used - covered}"
    for mod in covered:
        pkg = ROOT / "jobs" / "vlmops_jobs" / mod
        assert (pkg / "__main__.py").exists() or (pkg.with_suffix(".py")).exists(), \
            f"python -m vlmops_jobs.{mod} has no entrypoint"
    for name, mods in MODULES.items():
        for op, rest in instructions(name):
            if op == "CMD":
                cmd = eval(rest)
                if "-m" in cmd:
                    m = cmd[cmd.index("-m") + 1]
                    assert m.split(".")[1] in mods, f"{name}: CMD runs {m}"


@pytest.mark.parametrize("extra, exclude", [("data", ""), ("eval", ""), ("train", "torch,torchvision,triton,nvidia-*")])
def test_image_pins_pin_every_package(extra, exclude, tmp_path):
    r = subprocess.run([sys.executable, str(IMAGES / "pins.py"), "--extra", extra, "--exclude", exclude,
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    reqs = (tmp_path / "requirements.txt").read_text().split()
    assert reqs and all("==" in x for x in reqs), reqs
    locked = lock()
    for x in reqs:
        n, v = x.split("==")
        assert locked.get(n.lower()) == v, x
    cons = (tmp_path / "constraints.txt").read_text()
    if exclude:
        assert not re.search(r"^(torch|nvidia-\S+)==", cons, re.M)
        assert "megatron-core==" in (tmp_path / "requirements.txt").read_text()
    else:
        assert "numpy==" in cons


def test_the_operator_image_carries_the_contract_package_but_no_job_code():
    copied = [rest.split()[0] for op, rest in instructions("operator") if op == "COPY" and not rest.startswith("--")]
    assert "jobs/vlmops_contract/" in copied
    assert not [src for src in copied if src.startswith("jobs") and src != "jobs/vlmops_contract/"]
