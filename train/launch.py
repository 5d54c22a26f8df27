"""The accelerate configs (train/configs/accelerate/*.yaml), checked as `accelerate launch` reads them.

accelerate's own ClusterConfig refuses an unknown top-level key or distributed_type, but
``accelerate launch`` copies every key of a nested section (``fsdp_config``, ``deepspeed_config``,
...) onto its arguments without looking: a misspelt ``fsdp_auto_wrap_polcy`` is ignored and the
run shards differently than the file says. Here every key, top-level and nested, must be one of
``accelerate launch``'s own options (as launch maps it: ``fsdp_config.x`` is ``--fsdp_x``), and a
top-level value must parse as its option's type and choices (nested values may be ``auto``,
which DeepSpeed resolves, so only their choices are checked).
"""
from __future__ import annotations

from pathlib import Path

from curate.config import ConfigError, read_yaml
from curate.shipped import resolve

from .config import CONFIGS

# launch's prefix for a nested section's keys that lack it (accelerate/commands/launch.py)
PREFIX = {"fsdp_config": "fsdp_", "fp8_config": "fp8_", "dynamo_config": "dynamo_"}


def _options() -> dict:
    from accelerate.commands.launch import launch_command_parser

    return {a.dest: a for a in launch_command_parser()._actions}


def _check_value(key: str, value, action, nested: bool) -> str | None:
    """Why ``value`` is not what option ``action`` takes (None when it is)."""
    if action.choices is not None and str(value) not in [str(c) for c in action.choices]:
        return f"{key}: {value!r} is not one of {', '.join(map(str, action.choices))}"
    if nested:
        return None
    if action.type is None:  # a flag: accelerate config itself writes some as 'yes' / 'no'
        flag = isinstance(value, bool) or str(value).lower() in ("yes", "no", "true", "false")
        return None if flag else f"{key}: {value!r} is not true or false"
    try:
        action.type(str(value))
    except (TypeError, ValueError):
        return f"{key}: {value!r} is not a {getattr(action.type, '__name__', 'value')}"
    return None


def _fields(cluster_config) -> dict:
    """ClusterConfig's top-level keys that are no launch option of the same name (use_cpu is
    --cpu), as option-like checks: a bool field is a flag, an int field an int."""
    import typing
    from types import SimpleNamespace

    out = {}
    for name, f in cluster_config.__dataclass_fields__.items():
        kinds = set(typing.get_args(f.type) or (f.type,)) - {type(None)}
        if kinds == {bool}:
            out[name] = SimpleNamespace(choices=None, type=None)
        elif kinds == {int}:
            out[name] = SimpleNamespace(choices=None, type=int)
    return out


def problems(data: dict, options: dict) -> list[str]:
    """Every key or value of an accelerate config that `accelerate launch` would not take as written."""
    out = []
    for name, value in data.items():
        if isinstance(value, dict):
            for key, inner in value.items():
                prefix = PREFIX.get(name, "")
                option = key if key.startswith(prefix) else prefix + key
                if option not in options:
                    out.append(f"{name}.{key}: not an option of accelerate launch (--{option})")
                elif (why := _check_value(f"{name}.{key}", inner, options[option], nested=True)):
                    out.append(why)
        elif name in options and value is not None and (why := _check_value(name, value, options[name], False)):
            out.append(why)
    return out


def check(path: str | Path) -> str:
    """Validate an accelerate config file; a one-line description, or a ConfigError naming the first problem."""
    try:
        from accelerate.commands.config.config_args import ClusterConfig
    except ImportError:
        raise ConfigError(f"{path}: checking an accelerate config needs accelerate (pip install accelerate)") from None
    path = resolve(path, "train/configs", CONFIGS)  # `train/configs/...` not here names the shipped file
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an accelerate config is a mapping of keys (distributed_type, num_processes, ...)")
    try:  # accelerate's own reading: top-level keys, compute_environment and distributed_type
        cfg = ClusterConfig.from_yaml_file(str(path))
    except (TypeError, ValueError, KeyError) as e:
        raise ConfigError(f"{path}: accelerate cannot read it: {(str(e).splitlines() or [''])[0]}") from None
    found = problems(data, {**_fields(ClusterConfig), **_options()})
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ConfigError(f"{path}: {found[0]}{more}")
    kind = getattr(cfg.distributed_type, "value", cfg.distributed_type)
    return f"accelerate config ({kind}, {cfg.num_processes} processes, mixed precision {cfg.mixed_precision})"
