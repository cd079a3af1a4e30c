"""Reading the JSON files vtok's users hand it (configs, indexes, manifests) with errors that name
the file and the line, instead of a bare ``json`` message or a ``TypeError`` far from the cause.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def parse_json_object(text: str, where: str) -> dict[str, Any]:
    """``text`` as a JSON object.

    Args:
        text: the JSON text.
        where: what an error calls it (``"manifest.jsonl, line 3"``).

    Raises:
        ValueError: ``text`` is not JSON, or is JSON but not an object.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where} holds a JSON {type(value).__name__}, expected an object ({{...}})")
    return value


def read_json_object(path: str | Path) -> dict[str, Any]:
    """The JSON object in the file at ``path``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not JSON, or not a JSON object.
    """
    return parse_json_object(Path(path).read_text(), str(path))
