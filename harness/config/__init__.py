"""Loading and validating the harness's inputs: kubelet profiles, node facts, pods, suites."""

from harness.config.kubelet import KubeletConfiguration, load_profile, parse_profile
from harness.config.node import NodeFacts, load_facts
from harness.config.pod import Pod, load_pods, parse_pod
from harness.config.suite import Leak, Scenario, Suite, Workload, load_suite

__all__ = [
    "KubeletConfiguration",
    "Leak",
    "NodeFacts",
    "Pod",
    "Scenario",
    "Suite",
    "Workload",
    "load_facts",
    "load_pods",
    "load_profile",
    "load_suite",
    "parse_pod",
    "parse_profile",
]
