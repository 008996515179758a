"""Reading data source options: the checks every source shares, with errors that name the option.

Spark hands a Python data source its options as a case-insensitive map of strings; these helpers
turn one option into a typed value or raise :class:`~schemas.errors.OptionError` naming it.
"""

from __future__ import annotations

from typing import Mapping

from schemas.errors import OptionError


def positive_int(options: Mapping[str, str], name: str, default: int | None = None,
                 maximum: int | None = None, why_maximum: str = "") -> int | None:
    """``options[name]`` as an integer > 0 (at most ``maximum``); ``default`` when unset."""
    value = options.get(name)
    if value is None or value == "":
        return default
    if not str(value).isdigit() or int(value) <= 0:
        raise OptionError(f"option {name} must be a positive integer, got {value!r}")
    if maximum is not None and int(value) > maximum:
        raise OptionError(f"option {name} must be at most {maximum}{why_maximum}, got {value!r}")
    return int(value)


def flag(options: Mapping[str, str], name: str, default: bool) -> bool:
    """``options[name]`` as a boolean ("true"/"false", any case); ``default`` when unset."""
    value = options.get(name)
    if value is None or value == "":
        return default
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise OptionError(f"option {name} must be true or false, got {value!r}")
    return text == "true"


def required(options: Mapping[str, str], name: str, what: str) -> str:
    value = options.get(name)
    if not value:
        raise OptionError(f"option {name} is required ({what})")
    return value


def set_options(options: Mapping[str, object | None]) -> dict[str, str]:
    """The options that are set, as the strings Spark wants (None means "leave it to the source's default")."""
    return {key: str(value) for key, value in options.items() if value is not None}
