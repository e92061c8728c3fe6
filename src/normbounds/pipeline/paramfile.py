"""params.yaml as text -> a mapping: unique keys, and floats as YAML 1.2 reads them.

Apart from config.py so that the API and CLI, which build configs in Python,
do not need PyYAML.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from normbounds.errors import ConfigError


# PyYAML follows YAML 1.1, where `3e-3` (no dot) is a string; DVC writes such
# floats (`dvc exp run -S train.weight_decay=1e-3`), so read them as YAML 1.2 does.
class _Loader(yaml.SafeLoader):
    pass


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    """A mapping whose keys are unique: YAML itself would silently keep the last one."""
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise ConfigError(f"params.yaml: key {key!r} appears twice (line"
                              f" {key_node.start_mark.line + 1}); keep one")
        seen.add(key)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> Any:
    """The parsed file (None when it is empty); invalid YAML is one ConfigError."""
    try:
        return yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
