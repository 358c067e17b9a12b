"""What the API server refuses before any kubelet sees the pod: the pod-level resources rules.

With PodLevelResources on (beta, on by default from 1.34: model.versions), the API server defaults
``spec.resources`` (k8s pkg/apis/core/v1/defaults.go ``defaultPodRequests``, which
``model.resources.pod_view`` reproduces) and then validates it (pkg/apis/core/validation/
validation.go ``validatePodResources``, verified against v1.34.2):

* ``validateResourceRequirements`` on the pod-level lists: a request above its limit is
  ``spec.resources.requests: Invalid value: "<request>": must be less than or equal to <name>
  limit of <limit>``;
* ``validatePodResourceConsistency``: a pod-level request below the containers' aggregate request
  (``AggregateContainerRequests``, the sidecar formula of component-helpers/resource/helpers.go) is
  ``spec.resources.requests[<name>]: ... must be greater than or equal to aggregate container
  requests of <aggregate>``, and a regular container's limit above the pod-level limit is
  ``spec.resources.containers[<i>][<name>].limits: ... must be less than or equal to pod limits of
  <limit>`` (init containers are not checked there).

The API server answers such a pod with 422 (``reason: Invalid``), one cause per error, each naming
its field: the fields are what the harness compares (``config.podschema.FieldError.field``); the quantities in the
messages are Go's canonical spelling of a sum (``resource.Quantity.String``), which the text here
gives in the manifest's spelling or in bytes and millicores.
"""

from __future__ import annotations

from decimal import Decimal

from harness.config.kubelet import KubeletConfiguration
from harness.config.pod import Pod
from harness.config.podschema import FieldError
from harness.model.resources import CPU, aggregate_container, pod_view

# The 422 Status's reason (k8s.io/apimachinery pkg/api/errors NewInvalid: StatusReasonInvalid), the
# admission reason the harness records for a pod the API server refused to create
API_REFUSED = "APIServerRefused"


def _invalid(field: str, value: str, detail: str) -> FieldError:
    """``field.Invalid(path, value, detail)`` in the API server's words, as ``config.podschema``'s
    checks of a manifest report theirs."""
    return FieldError(field, f'Invalid value: "{value}": {detail}')


def _spell(name: str, v: Decimal) -> str:
    """A quantity as millicores (cpu) or a whole number (anything else)."""
    if name == CPU:
        return f"{int(v * 1000)}m" if v * 1000 != int(v) * 1000 else str(int(v))
    return str(int(v)) if v == int(v) else str(v)


def pod_resource_errors(pod: Pod, profile: KubeletConfiguration, kubelet_minor: int) -> list[FieldError]:
    """The API server's errors for ``pod.spec.resources`` where the gate keeps it (``[]``: valid, or
    no pod-level resources, or the gate is off and the API server drops the field)."""
    view = pod_view(pod, profile, kubelet_minor)
    if not view.pod_resources_present or pod.spec.resources is None:
        return []
    given_req = {k: str(v) for k, v in pod.spec.resources.requests.items()}
    given_lim = {k: str(v) for k, v in pod.spec.resources.limits.items()}
    reqs, lims = view.pod_requests or {}, view.pod_limits or {}
    errors: list[FieldError] = []
    for name in sorted(reqs):
        if name in lims and reqs[name] > lims[name]:
            errors.append(
                _invalid(
                    "spec.resources.requests",
                    given_req.get(name, _spell(name, reqs[name])),
                    f"must be less than or equal to {name} limit of {given_lim.get(name, _spell(name, lims[name]))}",
                )
            )
    aggregate = aggregate_container(view, "requests")
    for name in sorted(aggregate):
        if name in reqs and aggregate[name] > reqs[name]:
            errors.append(
                _invalid(
                    f"spec.resources.requests[{name}]",
                    given_req.get(name, _spell(name, reqs[name])),
                    f"must be greater than or equal to aggregate container requests of {_spell(name, aggregate[name])}",
                )
            )
    for i, c in enumerate(view.containers):
        for name in sorted(c.limits):
            if name in lims and c.limits[name] > lims[name]:
                errors.append(
                    _invalid(
                        f"spec.resources.containers[{i}][{name}].limits",
                        _spell(name, c.limits[name]),
                        f"must be less than or equal to pod limits of {given_lim.get(name, _spell(name, lims[name]))}",
                    )
                )
    return errors


def refused_fields(errors: list[FieldError]) -> str:
    """The fields of a refusal, sorted and joined: what a 422's causes are compared on."""
    return "; ".join(sorted({e.field for e in errors}))
