"""The operator's config file -> `BuildContext`: the one mapping, used by `vlmops operator`, `render`
and `validate`.

The chart renders /etc/vlmops/config.yaml (its ConfigMap; helper `vlmops.config` in _helpers.tpl).
Each top-level key is a `BuildContext` field in camelCase (`KEY_ALIASES` lists the exceptions) and
its value is converted by the field's type, so a new `BuildContext` field needs no edit here. A
missing or null key keeps the field's default; an unknown key is an error (a config written for a
newer operator must not be half-applied).

`render`/`validate --config` also take Helm values files, which is what users edit: `config_from_values`
applies them over the chart's values.yaml the way the helper does (tests/chart/test_config_from_values.py
renders the chart with Helm and checks that the two agree).
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from .builders.common import BuildContext

CHART = Path(__file__).resolve().parents[2] / "charts" / "vlmops"
# (class, field) -> config key, where the key is not the field's camelCase name
KEY_ALIASES = {(BuildContext, "service_account"): "jobServiceAccount"}


class ConfigError(ValueError):
    pass


# -- the operator's config ------------------------------------------------------------------------

def load_config(path: str | None) -> BuildContext:
    """The operator's defaults from its config file; built-in defaults when there is none (no ConfigMap
    mounted: a development run)."""
    if not path or not Path(path).exists():
        return BuildContext()
    return context_from_config(_read(path), path)


def context_from_config(data: dict[str, Any], where: str = "config") -> BuildContext:
    return _dataclass(BuildContext, data or {}, where)


def config_keys(cls: type = BuildContext) -> dict[str, str]:
    """Config key -> field name of a dataclass read from the config."""
    return {KEY_ALIASES.get((cls, f.name), _camel(f.name)): f.name for f in dataclasses.fields(cls) if f.init}


def _dataclass(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    keys = config_keys(cls)
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} (known: {', '.join(sorted(keys))})")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        name = keys[key]
        if value is not None:
            kwargs[name] = _value(hints[name], value, _default(fields[name]), f"{where}: {key}")
    return cls(**kwargs)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _value(hint: Any, value: Any, default: Any, where: str) -> Any:
    """`value` (YAML) as the field's type: a type's own `from_config`, a pydantic model, a nested
    dataclass (camelCase keys), or whatever pydantic validates the annotation with. A mapping merges
    over a mapping default (images: unset kinds keep theirs)."""
    from pydantic import BaseModel, TypeAdapter, ValidationError

    base = _without_none(hint)
    try:
        if hasattr(base, "from_config"):
            return base.from_config(value)
        if isinstance(base, type) and issubclass(base, BaseModel):
            return base.model_validate(value)
        if dataclasses.is_dataclass(base):
            return _dataclass(base, value, where)
        if isinstance(default, dict) and isinstance(value, dict):
            value = {**default, **value}
        return TypeAdapter(hint).validate_python(value)
    except ValidationError as e:
        raise ConfigError(f"{where}: " + "; ".join(f"{'.'.join(map(str, x['loc'])) or 'value'}: {x['msg']}"
                                                   for x in e.errors())) from e
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError) as e:  # a type's own from_config refusing the value
        raise ConfigError(f"{where}: {e}") from e


def _without_none(hint: Any) -> Any:
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _read(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(data).__name__}")
    return data


# -- Helm values -----------------------------------------------------------------------------------

def is_operator_config(data: dict[str, Any]) -> bool:
    """The chart's rendered config always has `images` at the top; values files never do (theirs is
    jobs.images, and values.schema.json admits no other)."""
    return "images" in data


def load_context(paths: list[str], chart: Path = CHART) -> BuildContext:
    """`--config` files: the operator's config file (one), or Helm values files merged in order over
    the chart's values.yaml, like `helm install -f a.yaml -f b.yaml`."""
    docs = [(p, _read(p)) for p in paths]
    configs = [p for p, d in docs if is_operator_config(d)]
    if configs and len(docs) > 1:
        raise ConfigError(f"{configs[0]} is the operator's config file: give it alone (values files are "
                          "what the chart turns into one)")
    if configs:
        return context_from_config(docs[0][1], configs[0])
    values = chart_values(chart)
    for _, d in docs:
        values = helm_merge(values, d)
    _check_values(values, chart, ", ".join(paths))
    return context_from_config(config_from_values(values, app_version(chart)), "values")


def chart_values(chart: Path = CHART) -> dict[str, Any]:
    if not (chart / "values.yaml").exists():
        raise ConfigError(f"reading Helm values needs the chart's values.yaml (not found in {chart}; --chart DIR), "
                          "or pass the operator's config file instead (ConfigMap <release>-config, key config.yaml)")
    return yaml.safe_load((chart / "values.yaml").read_text()) or {}


def app_version(chart: Path = CHART) -> str:
    return str(yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"])


def helm_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of a values file onto the defaults: maps merge, anything else replaces, null
    deletes the key."""
    out = dict(base)
    for k, v in override.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = helm_merge(out[k], v)
        else:
            out[k] = v
    return out


def _check_values(values: dict[str, Any], chart: Path, where: str) -> None:
    import json

    import jsonschema

    schema_path = chart / "values.schema.json"
    if not schema_path.exists():
        return
    errors = sorted(jsonschema.Draft7Validator(json.loads(schema_path.read_text())).iter_errors(values),
                    key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(f"{where}: " + "; ".join(
            f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors))


def _kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", name).lower()


def config_from_values(values: dict[str, Any], app_version: str) -> dict[str, Any]:
    """What the chart's `vlmops.config` helper renders from (coalesced) values. Keep in step with
    _helpers.tpl: tests/chart/test_config_from_values.py fails on any difference."""
    jobs, policy = values["jobs"], values["policy"]
    imgs, st = jobs["images"], jobs["storage"]
    registry = imgs["registry"].removesuffix("/")  # sprig trimSuffix: one slash
    storage = {k: st[k] for k in ("endpointURL", "region", "secretName") if st.get(k)}
    prefixes = ([st["prefix"]] if st.get("prefix") else []) + list(policy.get("extraStoragePrefixes") or [])
    return {
        "images": {k: imgs.get(k) or f"{registry}/vlmops-{_kebab(k)}:{imgs.get('tag') or app_version}"
                   for k in BuildContext().images},
        "storage": storage or None,
        "storagePrefix": st.get("prefix") or None,
        "jobServiceAccount": jobs.get("serviceAccountName") or None,
        "resources": jobs.get("resources"),
        "scheduling": jobs.get("scheduling") or None,
        "ttlSecondsAfterFinished": jobs.get("ttlSecondsAfterFinished"),
        "trainJobRuntime": values["training"]["trainJob"]["runtimeName"],
        "policy": {
            "imagePrefixes": [f"{registry}/", *(policy.get("extraImagePrefixes") or [])],
            "storagePrefixes": prefixes or None,
            "allowOverrides": policy.get("allowOverrides"),
            "maxShards": policy.get("maxShards"),
            "maxNodes": policy.get("maxNodes"),
            "maxGpus": policy.get("maxGpus"),
        },
    }
