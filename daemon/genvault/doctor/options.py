"""What doctor learns from an adapter's ``Options`` model alone, so a new provider gets
the alternative-finding checks without code of its own:

* the alternatives of a ``Literal`` option whose name says what it is about
  (``auth_style``, ``paging_params``): doctor tries each and suggests the one the
  server honours;
* which integer option sets the listing's page size (the one that moves
  ``provider.paging.size``), so probes can ask for small pages and a cap can be
  answered with the line to set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError

from genvault.providers.base import Provider, ProviderOptions

AUTH_WORD = "auth"
"""Options whose name holds this word choose how the key is sent (``auth_style``)."""
PAGING_WORD = "paging"
"""Options whose name holds this word choose how paging is spelled (``paging_params``)."""


def literal_values(annotation: Any) -> tuple[Any, ...]:
    """The values of a ``Literal[...]`` annotation (``Literal[...] | None`` too); () else."""
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    values: list[Any] = []
    for arg in get_args(annotation):
        if get_origin(arg) is Literal:
            values.extend(get_args(arg))
    return tuple(values)


def literal_fields(options: ProviderOptions) -> Iterator[tuple[str, tuple[Any, ...]]]:
    for name, field in type(options).model_fields.items():
        values = literal_values(field.annotation)
        if values:
            yield name, values


def alternatives(options: ProviderOptions, word: str) -> list[tuple[str, Any]]:
    """``(option, value)`` for every other value of each Literal option named with ``word``."""
    out: list[tuple[str, Any]] = []
    for name, values in literal_fields(options):
        if word in name:
            current = getattr(options, name)
            out.extend((name, v) for v in values if v != current)
    return out


def other_literal_alternatives(options: ProviderOptions) -> list[tuple[str, Any]]:
    """Every other value of every Literal option not about auth or paging."""
    out: list[tuple[str, Any]] = []
    for name, values in literal_fields(options):
        if AUTH_WORD not in name and PAGING_WORD not in name:
            current = getattr(options, name)
            out.extend((name, v) for v in values if v != current)
    return out


def with_option(options: ProviderOptions, **changes: Any) -> ProviderOptions:
    """``options`` with ``changes``, validated like the config (ValidationError if not)."""
    data = options.model_dump()
    data.update(changes)
    return type(options).model_validate(data)


def valid_alternatives(
    options: ProviderOptions, changes: Iterable[tuple[str, Any]]
) -> Iterator[tuple[str, Any, ProviderOptions]]:
    """``(option, value, options with it)`` for each change the config would accept.

    The checks that look for a setting that works try each of these in turn; a change
    the options model refuses (a value that clashes with another option) is passed over.
    """
    for option, value in changes:
        try:
            changed = with_option(options, **{option: value})
        except ValidationError:
            continue
        yield option, value, changed


def size_option(
    options: ProviderOptions, make: Callable[[ProviderOptions], Provider]
) -> str | None:
    """The integer option that sets ``paging.size`` (``page_size``, ``items_per_page``...)."""
    for name, field in type(options).model_fields.items():
        if field.annotation is not int:
            continue
        try:
            two = make(with_option(options, **{name: 2})).paging.size
            three = make(with_option(options, **{name: 3})).paging.size
        except (ValidationError, NotImplementedError):
            continue
        if (two, three) == (2, 3):
            return name
    return None


def toml_value(value: Any) -> str:
    """``value`` as it is written in the TOML config."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def config_line(account: str, option: str, value: Any) -> str:
    """``accounts[main].paging_params = "camel"``."""
    return f"accounts[{account}].{option} = {toml_value(value)}"


__all__ = [
    "AUTH_WORD",
    "PAGING_WORD",
    "alternatives",
    "config_line",
    "literal_values",
    "other_literal_alternatives",
    "size_option",
    "toml_value",
    "valid_alternatives",
    "with_option",
]
