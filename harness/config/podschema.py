"""A Pod manifest checked as strictly as the API server does: every error, not only the first.

The model reads a few fields of a Pod; the rest is kept so the same file can be sent to the API
server. A misspelt field must not pass silently (``resorces:`` made a BestEffort pod of a pod that
asked 1Gi), so the whole manifest is walked against the v1 API's own field lists, taken from the
official Kubernetes Python client's generated models (``openapi_types`` / ``attribute_map`` of
``V1Pod`` and what it refers to, generated from the API server's OpenAPI document), and requests
are checked against limits with the API server's message.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import kubernetes.client.models as k8s_models

from harness import quantity

_LIST = re.compile(r"^(?:list|List)\[(.+)\]$")
_DICT = re.compile(r"^(?:dict|Dict)\[str, (.+)\]$|^dict\(str, (.+)\)$")
_SCALARS = {"str", "int", "float", "bool", "object", "datetime", "date"}


@dataclass(frozen=True)
class FieldError:
    """One problem at a field path, worded like the API server's field.Error."""

    field: str
    reason: str


def _fields(model: type) -> dict[str, str]:
    """JSON field name -> type name of one generated model."""
    types: dict[str, str] = model.openapi_types  # type: ignore[attr-defined]
    names: dict[str, str] = model.attribute_map  # type: ignore[attr-defined]
    return {names[attr]: t for attr, t in types.items()}


def _walk(value: Any, type_name: str, path: str, out: list[FieldError]) -> None:
    if type_name in _SCALARS or value is None:
        return
    if m := _LIST.match(type_name):
        if isinstance(value, list):
            for i, item in enumerate(value):
                _walk(item, m.group(1), f"{path}[{i}]", out)
        return
    if m := _DICT.match(type_name):
        if isinstance(value, dict):
            for k, item in value.items():
                _walk(item, m.group(1) or m.group(2), f"{path}[{k}]", out)
        return
    model = getattr(k8s_models, type_name, None)
    if model is None or not isinstance(value, dict):
        return  # type errors of the fields the model reads are pydantic's (pod.py)
    known = _fields(model)
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in known:
            hint = difflib.get_close_matches(str(key), list(known), n=1)
            # kubectl apply --validate=strict: 'unknown field "spec.containers[0].resorces"'
            out.append(FieldError(where, "unknown field" + (f" (did you mean {hint[0]!r}?)" if hint else "")))
            continue
        _walk(item, known[key], where, out)


def unknown_fields(data: dict[str, Any]) -> list[FieldError]:
    """Every field of a v1 Pod manifest that the v1 API does not have, with a did-you-mean."""
    out: list[FieldError] = []
    _walk(data, "V1Pod", "", out)
    return out


def requests_above_limits(resources: Any, path: str) -> list[FieldError]:
    """k8s: pkg/apis/core/validation/validation.go ValidateResourceRequirements: a request above its
    limit is ``field.Invalid(reqPath, quantity.String(), "must be less than or equal to %s limit of
    %s")``, reqPath = ``resources.requests[<name>]``."""
    if not isinstance(resources, dict):
        return []
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    if not isinstance(requests, dict) or not isinstance(limits, dict):
        return []
    out: list[FieldError] = []
    for name, req in requests.items():
        if name not in limits:
            continue
        try:
            above = quantity.parse(req) > quantity.parse(limits[name])
        except ValueError:
            continue  # a bad quantity is reported by the quantity check
        if above:
            out.append(
                FieldError(
                    f"{path}.requests[{name}]",
                    f'Invalid value: "{req}": must be less than or equal to {name} limit of {limits[name]}',
                )
            )
    return out


def pod_requests_above_limits(data: dict[str, Any]) -> list[FieldError]:
    """Requests above limits in every container, init container and the pod-level resources."""
    spec = data.get("spec")
    if not isinstance(spec, dict):
        return []
    out = requests_above_limits(spec.get("resources"), "spec.resources")
    for key in ("initContainers", "containers"):
        items = spec.get(key)
        for i, c in enumerate(items if isinstance(items, list) else []):
            if isinstance(c, dict):
                out += requests_above_limits(c.get("resources"), f"spec.{key}[{i}].resources")
    return out
