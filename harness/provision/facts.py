"""Host facts from the ``facts`` role -> the model's :class:`~harness.config.node.NodeFacts`."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from harness.config.errors import first_error
from harness.config.node import NodeFacts, parse_kubelet_version


def node_fact_keys() -> set[str]:
    return {f.alias or name for name, f in NodeFacts.model_fields.items()}


def to_node_facts(facts: dict[str, Any], source: str = "<host facts>") -> tuple[NodeFacts, list[str]]:
    """The NodeFacts of a host, and notes on facts left out (e.g. a kubelet outside the model's range)."""
    keys = node_fact_keys()
    data = {k: v for k, v in facts.items() if k in keys}
    notes: list[str] = []
    kv = data.get("kubeletVersion")
    if kv is not None:
        try:
            parse_kubelet_version(kv)
        except ValueError as exc:
            notes.append(f"kubeletVersion {kv}: {exc}; the model's default is used")
            data.pop("kubeletVersion")
    try:
        return NodeFacts.model_validate(data), notes
    except ValidationError as exc:
        raise first_error(exc, source, NodeFacts) from None
