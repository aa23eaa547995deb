"""Env names -> ``EnvSpec``: the built-in envs by name, any other by ``module:ATTRIBUTE``.

Built-in envs are listed as import paths (strings), so importing the registry loads no env;
``load_spec`` imports the one asked for. A user's env needs no change to horizon: put
``env: {name: mypkg.myenv:SPEC}`` in the config (the module must be importable).

Example::

    spec = load_spec("chain_math")          # envs.chain_math.SPEC
    spec = load_spec("mypkg.myenv:SPEC")    # a user's env
"""

from __future__ import annotations

import difflib
import importlib

from envs.base import EnvSpec
from rl.errors import ConfigError

BUILTIN: dict[str, str] = {
    "chain_math": "envs.chain_math:SPEC",
    "reasoning_gym": "envs.reasoning_gym:SPEC",
    "dataset": "envs.datasets:SPEC",
    "humaneval": "envs.code:SPEC",
    "needle": "envs.needle:SPEC",
}


def load_spec(name: str) -> EnvSpec:
    """The ``EnvSpec`` called ``name``; ``ConfigError`` naming ``env.name`` if there is none."""
    path = BUILTIN.get(name)
    if path is None and ":" not in name:
        close = difflib.get_close_matches(name, list(BUILTIN), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"config key 'env.name': unknown env '{name}': {hint}use one of {sorted(BUILTIN)} "
                          "or a user env as 'module.path:SPEC'")
    module_name, _, attribute = (path or name).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"config key 'env.name': cannot import '{module_name}' ({e}): is the module "
                          "on PYTHONPATH / installed?") from e
    spec = getattr(module, attribute, None)
    if not isinstance(spec, EnvSpec):
        raise ConfigError(f"config key 'env.name': '{module_name}:{attribute}' is "
                          f"{'missing' if spec is None else type(spec).__name__}, not an envs.base.EnvSpec")
    return spec
