"""``cnnlab train --config FILE``: a JSON or YAML file of :class:`~.config.TrainConfig`
settings (a run's ``config.json`` is one), read and checked key by key."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from .. import run_folder
from ..errors import CnnlabError, first_line
from .config import TrainConfig


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings of a ``train --config FILE``: a JSON or YAML (``.yaml``/``.yml``) mapping
    of :class:`TrainConfig` fields, such as a run's ``config.json``, whose records (versions,
    command line: :data:`cnnlab.run_folder.RECORD_KEYS`) are skipped. Values are checked when the
    TrainConfig is built; an unknown key is refused by name."""
    path = Path(path)
    yaml_file = path.suffix.lower() in (".yaml", ".yml")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        reason = "no such file" if isinstance(err, FileNotFoundError) else str(err)
        raise CnnlabError(
            f"--config {path}: cannot read it ({reason}); give a JSON or YAML file of settings, "
            "e.g. runs/NAME/config.json"
        ) from None
    try:
        if yaml_file:
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as err:  # json.JSONDecodeError, yaml.YAMLError
        first = first_line(err, type(err).__name__)
        kind = "YAML" if yaml_file else "JSON (name a YAML file .yaml or .yml)"
        raise CnnlabError(f"--config {path}: not valid {kind}: {first}; fix the file") from None
    if not isinstance(values, dict):
        raise CnnlabError(
            f"--config {path}: holds a {type(values).__name__}, expected a mapping of settings "
            'such as {"epochs": 3, "lr": 0.01}'
        )
    known = [f.name for f in fields(TrainConfig)]
    for key in values:
        if key not in known and key not in run_folder.RECORD_KEYS:
            raise CnnlabError(
                f"--config {path}: unknown setting {key!r}; expected TrainConfig fields: "
                f"{', '.join(known)}"
            )
    if not isinstance(values.get("model_options", {}), dict):
        raise CnnlabError(
            f"--config {path}: model_options is {values['model_options']!r}, expected a mapping "
            'such as {modern: true} (YAML) or {"modern": true} (JSON)'
        )
    if values.get("transfer"):
        raise CnnlabError(
            f"--config {path}: it is a transfer run's (transfer: {values['transfer']}); "
            "rerun it with `cnnlab transfer`, or drop the transfer key"
        )
    return {k: v for k, v in values.items() if k in known}
