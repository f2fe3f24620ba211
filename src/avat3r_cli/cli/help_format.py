"""Help-page details shared by every command: a flag shows no value type.

Typer's Rich help prints a type column for every option, ``<bool>`` included, which reads as if
``--no-video`` took a value. Options that take one keep their column (``<int>``, ``OUT``); flags
(``--no-video``, ``--json``, ``-h/--help``) get an empty one, as in plain Click help.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup, TyperOption


def _no_type(ctx: Any = None) -> None:
    return None


def _hide_flag_types(params: list[Any]) -> list[Any]:
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag:
            # The Rich help panel asks each option for this; an instance attribute answers for
            # flags only, leaving Typer's class (and every option that takes a value) untouched.
            param.display_type_rich = _no_type  # type: ignore[attr-defined]
    return params


class FlagsWithoutTypeCommand(TyperCommand):
    """A command whose help shows no ``<bool>`` after its flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _hide_flag_types(super().get_params(ctx))


class FlagsWithoutTypeGroup(TyperGroup):
    """A group (``avat3r``, ``avat3r weights``) whose help shows no ``<bool>`` after its flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _hide_flag_types(super().get_params(ctx))
