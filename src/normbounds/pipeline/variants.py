"""A study's `variants:`: named sets of section overrides laid over its params.

A study's params.yaml may name variants (e.g. `k2s2: {model: {stride: 2}}`); DVC runs the
root pipeline's stages once per variant, and config.parse_params validates each one.
"""

from __future__ import annotations

import re

from normbounds.constraints import require
from normbounds.errors import ConfigError

# no "." (DVC reads variants.a.b as a nested key) and no "-" (stage names join with it)
_VARIANT_NAME = re.compile(r"[A-Za-z0-9_]+")


def overlay(raw: dict, over: dict) -> dict:
    """params with a variant's sections laid over them key by key."""
    out = dict(raw)
    for section, values in over.items():
        base = out.get(section) or {}
        out[section] = {**base, **values} if isinstance(values, dict) else values
    return out


def variant_overrides(raw: dict) -> dict[str, dict]:
    """The `variants:` of a params mapping, each name and override checked."""
    variants = raw.get("variants") or {}
    if not isinstance(variants, dict):
        raise ConfigError("params.yaml: variants must map a name to section overrides,"
                          f" got {variants!r}")
    for name, over in variants.items():
        require(isinstance(name, str) and bool(_VARIANT_NAME.fullmatch(name)), "variants",
                 name, "variant names use letters, digits and '_' only")
        require(isinstance(over, dict) and all(isinstance(v, dict) for v in over.values()),
                 f"variants.{name}", over, "must map sections to {key: value} overrides")
    return variants
