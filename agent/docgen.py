"""Markdown tables from pydantic models: one generator for docs/mqtt.md and docs/config.md."""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Collection, Iterable
from pathlib import PurePath

from pydantic import BaseModel


def _type_name(tp: object) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a!r}`".replace("'", '"') for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (list, tuple, dict):
        inner = ", ".join(_type_name(a) for a in args if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " \\| ".join(f'`"{m.value}"`' for m in tp)
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return {
            "str": "string",
            "int": "integer",
            "float": "number",
            "bool": "boolean",
            "Path": "path",
        }.get(tp.__name__, tp.__name__)
    return str(tp)


def nested_models(tp: object) -> list[type[BaseModel]]:
    """The pydantic models a field annotation refers to (through unions, lists, Annotated)."""
    found: list[type[BaseModel]] = []
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    for a in typing.get_args(tp):
        found += nested_models(a)
    return found


def undescribed_fields(roots: Iterable[type[BaseModel]], ignore: Collection[str] = ()) -> list[str]:
    """`Model.field` for every field without a description in `roots` and the models they nest
    (fields named in `ignore` aside): what the generated reference would leave blank."""
    missing = []
    seen: set[type[BaseModel]] = set()
    stack = list(roots)
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            if name not in ignore and not (field.description or "").strip():
                missing.append(f"{model.__name__}.{name}")
            stack += nested_models(field.annotation)
    return missing


def _default(field: typing.Any) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "(computed)"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section defaults)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, PurePath):
        value = str(value)
    return f"`{value!r}`".replace("'", '"') if value is not None else "`null`"


def model_table(
    model: type[BaseModel], seen: set[type[BaseModel]], defaults: bool = False
) -> list[str]:
    """Markdown table of a model's fields, followed by tables of its nested models.

    With `defaults`, the third column gives each field's default instead of "required".
    """
    third = "default" if defaults else "required"
    lines = [
        f"**{model.__name__}**",
        "",
        f"| field | type | {third} | description |",
        "|---|---|---|---|",
    ]
    nested: list[type[BaseModel]] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        # a field docstring wrapped over several lines reads as one line
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        if not desc and name == "type" and typing.get_origin(field.annotation) is typing.Literal:
            desc = "Selects this variant."
        req = _default(field) if defaults else ("yes" if field.is_required() else "no")
        lines.append(f"| `{key}` | {_type_name(field.annotation)} | {req} | {desc} |")
        for m in nested_models(field.annotation):
            if m not in seen:
                seen.add(m)
                nested.append(m)
    lines.append("")
    for m in nested:
        lines += model_table(m, seen, defaults)
    return lines
