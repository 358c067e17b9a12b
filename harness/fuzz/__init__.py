"""Differential testing against the real kubelet (``harness fuzz``).

Random pods and kubelet profiles, drawn deterministically from a seed (``generate``), run on the local
cluster (``runner``) and compared, pod by pod, with the model (``compare``): admission, every cgroup file
the model predicts and every container's oom_score_adj. A difference becomes a one-pod reproducer suite
that ``harness run <suite> --backend kubernetes`` accepts.
"""
