"""Pydantic models generated from a JSON Schema (the subset contract/report_schema.py uses), so host-serve
validates reports against the one definition the device writes them to, with no hand-kept mirror.

The subset: ``type`` (integer, number, string, boolean, object, null, or a list of them), ``properties`` and
``required``, ``additionalProperties`` (true: extra keys kept; false: refused; absent: accepted, not kept),
``anyOf`` of a schema and null, ``enum``, ``const``, ``minimum``, ``maximum``, ``exclusiveMinimum``,
``exclusiveMaximum``, ``pattern``, ``minLength``, ``maxLength``, ``title``. Anything else is refused when
the model is made (a schema feature that silently validated nothing would be worse than no model).

Models are strict: JSON's types as the schema says them (no true for a number, no "5" for an integer);
an integer is a number, as in JSON Schema.
"""
from __future__ import annotations

import keyword
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

SCALARS = {"integer": int, "number": float, "string": str, "boolean": bool}
CONSTRAINTS = {"minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt",
               "pattern": "pattern", "minLength": "min_length", "maxLength": "max_length"}
KNOWN_KEYWORDS = {"type", "properties", "required", "additionalProperties", "anyOf", "enum", "const", "title",
                  "description", *CONSTRAINTS}
EXTRA = {True: "allow", False: "forbid", None: "ignore"}


class SchemaNotSupported(ValueError):
    """The schema uses a JSON Schema feature this generator does not translate."""


def model_from_schema(schema: dict, name: str | None = None) -> type[BaseModel]:
    """A strict pydantic model for the object ``schema``; nested objects with properties become models too,
    named by their ``title`` or by their parent's name and the property's."""
    name = schema.get("title") or name
    if not name:
        raise SchemaNotSupported("an object schema needs a title (or a name given) to name its model")
    _check_keywords(schema, name)
    if schema.get("type") != "object" or "properties" not in schema:
        raise SchemaNotSupported(f"{name}: a model is made from an object schema with properties")
    required = set(schema.get("required", ()))
    fields = {}
    for key, subschema in schema["properties"].items():
        annotation = _annotation(subschema, name + _camel(key))
        options = {CONSTRAINTS[k]: v for k, v in subschema.items() if k in CONSTRAINTS}
        python_name = key
        if not key.isidentifier() or keyword.iskeyword(key) or hasattr(BaseModel, key):
            python_name, options["alias"] = key + "_", key  # e.g. "schema", a BaseModel method
        # an optional key may be left out (then None, never validated) but, when given, must be what its schema
        # says: null only where the schema allows it (found by the mutational fuzzing: "spool_id": null stored)
        default = ... if key in required else None
        fields[python_name] = (annotation, Field(default, **options))
    config = ConfigDict(strict=True, extra=EXTRA[schema.get("additionalProperties")], populate_by_name=True)
    return create_model(name, __config__=config, **fields)


def _annotation(schema: dict, name: str) -> Any:
    """The Python type a property's schema stands for."""
    _check_keywords(schema, name)
    if "anyOf" in schema:
        options = [_annotation(option, name) for option in schema["anyOf"]]
        return Union[tuple(options)] if len(options) > 1 else options[0]
    allowed = ([schema["const"]] if "const" in schema else list(schema["enum"])) if (
        "const" in schema or "enum" in schema) else None
    kinds = schema.get("type")
    if allowed is not None and kinds in SCALARS:  # the type first (strict: 1.0 and true are not the integer 1)
        return Annotated[SCALARS[kinds], AfterValidator(_one_of(allowed))]
    if allowed is not None:
        return Literal[tuple(allowed)]
    if isinstance(kinds, list):
        options = [_annotation(dict(schema, type=kind), name) for kind in kinds]
        return Union[tuple(options)] if len(options) > 1 else options[0]
    if kinds == "null":
        return type(None)
    if kinds in SCALARS:
        return SCALARS[kinds]
    if kinds == "object":
        return model_from_schema(schema, name) if "properties" in schema else dict[str, Any]
    raise SchemaNotSupported(f"{name}: type {kinds!r} is not translated (one of {', '.join(SCALARS)}, object, null)")


def _one_of(allowed: list):
    def check(value):
        if value not in allowed:
            raise ValueError(f"must be one of {allowed}")
        return value
    return check


def _check_keywords(schema: dict, name: str) -> None:
    unknown = sorted(set(schema) - KNOWN_KEYWORDS)
    if unknown:
        raise SchemaNotSupported(f"{name}: JSON Schema keyword(s) {', '.join(unknown)} are not translated")


def _camel(key: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in key.split("_"))
