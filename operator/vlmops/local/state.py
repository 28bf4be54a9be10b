"""Workdir layout and JSON state files (atomic writes: a killed run never leaves half a file)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Workdir:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        for d in ("state/crs", "state/children", "state/pods", "logs", "storage"):
            (self.root / d).mkdir(parents=True, exist_ok=True)

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    def cr_path(self, kind: str, name: str) -> Path:
        return self.root / "state" / "crs" / f"{kind}.{name}.json"

    def child_path(self, kind: str, name: str) -> Path:
        return self.root / "state" / "children" / f"{kind}.{name}.json"

    def pods_path(self, child: str) -> Path:
        return self.root / "state" / "pods" / f"{child}.json"

    def log_dir(self, cr_name: str) -> Path:
        d = self.root / "logs" / cr_name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def crs(self) -> list[dict[str, Any]]:
        return [read_json(p) for p in sorted((self.root / "state" / "crs").glob("*.json"))]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)
