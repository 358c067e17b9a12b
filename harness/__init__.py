"""Stress-test harness for how the kubelet and the Linux kernel protect node memory."""

__version__ = "0.1.0"
