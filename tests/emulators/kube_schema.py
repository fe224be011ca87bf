"""Custom resources checked against their CRD's ``openAPIV3Schema``, as apiextensions-apiserver does.

On every write of a custom resource the API server decodes the body, prunes or rejects fields the
schema does not know, applies ``default``s, validates the result against the structural schema and
its CEL rules, and answers 422 Invalid with one cause per failing field.  Sources:
https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
("Validation", "Defaulting", "Field pruning", "Validation rules") and apiextensions-apiserver
``pkg/apiserver/validation`` (kube-openapi ``validate`` messages), ``pkg/apiserver/schema/pruning``,
``pkg/apiserver/schema/defaulting``, ``pkg/apiserver/schema/cel``.

What is implemented:

* ``type`` (object, array, string, integer, number, boolean), ``nullable``,
  ``x-kubernetes-int-or-string``, ``enum``, ``minimum``/``maximum`` (and exclusive), ``minLength``/
  ``maxLength``, ``pattern``, ``format: date-time``, ``minItems``/``maxItems``, ``required``,
  ``properties``, ``additionalProperties``, ``allOf``/``anyOf``/``oneOf``/``not`` (value
  constraints only, as in a structural schema), ``x-kubernetes-list-type: map`` key uniqueness;
* unknown fields: with ``fieldValidation=Strict`` (what kubectl sends) a 400 naming them
  ("strict decoding error: unknown field ..."); otherwise dropped, as pruning does;
  ``x-kubernetes-preserve-unknown-fields`` stops both; ``metadata`` is left to the generic checks;
* ``default`` applied where a field is absent and its parent object present;
* validation ratcheting on update (KEP-4008, default since 1.30): errors in fields the write left
  unchanged are dropped (list items compared by index, a simplification);
* ``x-kubernetes-validations`` rules evaluated with cel-python (a test-only dependency) unless a
  type error below the node blocks them, with
  ``self`` bound to the node and ``oldSelf`` on updates (transition rules are skipped on create);
  the rule's ``message`` (or "failed rule: <rule>") is the error, reported at the rule's node.

Messages follow kube-openapi's wording; only the field paths and reasons are relied on by tests.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any

JSON = dict[str, Any]


class FieldError(Exception):
    def __init__(self, path: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.path, self.reason, self.message = path, reason, message


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(schema: Mapping[str, Any], value: Any) -> bool:
    want = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, int | str) and not isinstance(value, bool)
    if not want:
        return True
    got = _type_of(value)
    return got == want or (want == "number" and got == "integer")


def _constraints(schema: Mapping[str, Any], value: Any, path: str, errors: list[FieldError]) -> None:
    """Value constraints of one schema node (not its children)."""
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in schema["enum"])
        errors.append(FieldError(path, "FieldValueNotSupported",
                                 f"Unsupported value: {_show(value)}: supported values: {supported}"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and (value < schema["minimum"] or
                                    (schema.get("exclusiveMinimum") and value == schema["minimum"])):
            errors.append(FieldError(path, "FieldValueInvalid", f"Invalid value: {_show(value)}: {path} in body "
                                     f"should be greater than or equal to {schema['minimum']}"))
        if "maximum" in schema and (value > schema["maximum"] or
                                    (schema.get("exclusiveMaximum") and value == schema["maximum"])):
            errors.append(FieldError(path, "FieldValueInvalid", f"Invalid value: {_show(value)}: {path} in body "
                                     f"should be less than or equal to {schema['maximum']}"))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(FieldError(path, "FieldValueInvalid", f"Invalid value: {_show(value)}: {path} in body "
                                     f"should be at least {schema['minLength']} chars long"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(FieldError(path, "FieldValueTooLong",
                                     f"Too long: may not be more than {schema['maxLength']} bytes"))
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            errors.append(FieldError(path, "FieldValueInvalid", f"Invalid value: {_show(value)}: {path} in body "
                                     f"should match '{schema['pattern']}'"))
        if schema.get("format") == "date-time":
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                errors.append(FieldError(path, "FieldValueInvalid", f"Invalid value: {_show(value)}: {path} in body "
                                         "must be of type date-time"))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(FieldError(path, "FieldValueInvalid",
                                     f"Invalid value: {len(value)}: {path} in body should have at least "
                                     f"{schema['minItems']} items"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(FieldError(path, "FieldValueTooMany",
                                     f"Too many: {len(value)}: must have at most {schema['maxItems']} items"))
    if isinstance(value, dict):
        for name in schema.get("required") or []:
            if name not in value:
                errors.append(FieldError(_join(path, name), "FieldValueRequired", "Required value"))
    for sub in schema.get("allOf") or []:
        _junctor_check(sub, value, path, errors)
    if "anyOf" in schema and not any(_passes(sub, value, path) for sub in schema["anyOf"]):
        errors.append(FieldError(path, "FieldValueInvalid", f"Invalid value: {_show(value)}: {path} in body "
                                 "must match at least one schema in anyOf"))
    if "oneOf" in schema and sum(_passes(sub, value, path) for sub in schema["oneOf"]) != 1:
        errors.append(FieldError(path, "FieldValueInvalid", f"Invalid value: {_show(value)}: {path} in body "
                                 "must validate one and only one schema (oneOf)"))
    if "not" in schema and _passes(schema["not"], value, path):
        errors.append(FieldError(path, "FieldValueInvalid", f"Invalid value: {_show(value)}: {path} in body "
                                 "must not validate the schema (not)"))


def _junctor_check(schema: Mapping[str, Any], value: Any, path: str, errors: list[FieldError]) -> None:
    if not _type_ok(schema, value):
        errors.append(FieldError(path, "FieldValueTypeInvalid",
                                 f"Invalid value: {_show(value)}: {path} in body must be of type {_wanted(schema)}"))
        return
    _constraints(schema, value, path, errors)


def _passes(schema: Mapping[str, Any], value: Any, path: str) -> bool:
    errors: list[FieldError] = []
    _junctor_check(schema, value, path, errors)
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                _junctor_check(sub, value[key], _join(path, key), errors)
    return not errors


def _wanted(schema: Mapping[str, Any]) -> str:
    return "integer or string" if schema.get("x-kubernetes-int-or-string") else str(schema.get("type"))


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return str(value).lower() if isinstance(value, bool) else str(value)


def prune_and_default(schema: Mapping[str, Any], value: Any, path: str, unknown: list[str]) -> Any:
    """Drop fields the schema does not declare (recording their paths) and fill in defaults."""
    if isinstance(value, dict) and (schema.get("type") == "object" or "properties" in schema):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            props = schema.get("properties") or {}
        else:
            props = schema.get("properties") or {}
            extra = schema.get("additionalProperties")
            for key in list(value):
                if key not in props and not isinstance(extra, dict) and extra is not True:
                    unknown.append(_join(path, key))
                    del value[key]
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = prune_and_default(sub, value[key], _join(path, key), unknown)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in list(value):
                if key not in props:
                    value[key] = prune_and_default(extra, value[key], _join(path, key), unknown)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune_and_default(schema["items"], v, f"{path}[{i}]", unknown) for i, v in enumerate(value)]
    return value


_ABSENT = object()
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def value_at(obj: Any, path: str) -> Any:
    """The value at a field path such as ``status.conditions[0].reason`` (a sentinel if absent)."""
    current = obj
    for name, index in _SEGMENT.findall(path):
        if name:
            if not isinstance(current, dict) or name not in current:
                return _ABSENT
            current = current[name]
        else:
            if not isinstance(current, list) or int(index) >= len(current):
                return _ABSENT
            current = current[int(index)]
    return current


def validate(schema: Mapping[str, Any], value: Any, path: str, errors: list[FieldError], *,
             old: Any = None, has_old: bool = False) -> None:
    if value is None:
        if not schema.get("nullable"):
            errors.append(FieldError(path, "FieldValueTypeInvalid",
                                     f"Invalid value: \"null\": {path} in body must be of type "
                                     f"{schema.get('type') or 'object'}"))
        return
    if not _type_ok(schema, value):
        errors.append(FieldError(path, "FieldValueTypeInvalid",
                                 f"Invalid value: {_show(value)}: {path} in body must be of type {_wanted(schema)}"))
        return
    before = len(errors)
    _constraints(schema, value, path, errors)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key in value:
                sub_old = old.get(key) if isinstance(old, dict) else None
                validate(sub, value[key], _join(path, key), errors, old=sub_old,
                         has_old=isinstance(old, dict) and key in old)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                if key not in props:
                    validate(extra, item, _join(path, key), errors)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            validate(schema["items"], item, f"{path}[{i}]", errors)
        if schema.get("x-kubernetes-list-type") == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen: set[tuple[Any, ...]] = set()
            for i, item in enumerate(value):
                k = tuple(item.get(key) for key in keys) if isinstance(item, dict) else (item,)
                if k in seen:
                    errors.append(FieldError(f"{path}[{i}]", "FieldValueDuplicate",
                                             f"Duplicate value: {dict(zip(keys, k, strict=False))}"))
                seen.add(k)
    # CEL rules run next to the schema's errors, unless a type error makes the node unsafe to
    # evaluate (apiextensions strategy.go: hasBlockingErr).
    if not any(e.reason == "FieldValueTypeInvalid" for e in errors[before:]):
        for rule in schema.get("x-kubernetes-validations") or []:
            message = _cel(rule, value, old if has_old else None, has_old)
            if message is not None:
                errors.append(FieldError(path, "FieldValueInvalid",
                                         f"Invalid value: {_show(value)}: {message}"))


@cache
def _program(rule: str) -> Any:
    import celpy  # test-only dependency; imported on the first CRD with CEL rules

    env = celpy.Environment()
    return env.program(env.compile(rule))


def _cel(rule: Mapping[str, Any], value: Any, old: Any, has_old: bool) -> str | None:
    """None when the rule holds; else the message to report."""
    import celpy

    expression = str(rule["rule"])
    if "oldSelf" in expression and not has_old:
        return None  # a transition rule: only on update
    activation = {"self": celpy.json_to_cel(value)}
    if has_old:
        activation["oldSelf"] = celpy.json_to_cel(old)
    try:
        result = _program(expression).evaluate(activation)
    except Exception as exc:  # an evaluation error fails validation, as in the API server
        return f"rule evaluation error: {exc}"
    if isinstance(result, Exception) or not bool(result):
        return str(rule.get("message") or f"failed rule: {expression}")
    return None
