#!/usr/bin/env bash
# One-shot, idempotent set-up of this host for the harness (run as root).
#  - Debian packages: compiler for the workloads, Docker engine, containerd, runc, QEMU and
#    mmdebstrap for the VM lab hosts (harness lab)
#  - the Python package and its development tools (editable install)
#  - the static workload binaries and their OCI images
# Nothing is started here; daemons are started on demand by the harness itself.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

APT_PACKAGES=(gcc make libc6-dev docker.io containerd runc iproute2 procps openssl etcd-server containernetworking-plugins openssh-server chromium prometheus prometheus-pushgateway prometheus-node-exporter qemu-system-x86 qemu-utils mmdebstrap e2fsprogs)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    log "missing Debian packages: ${missing[*]} (run this script as root)"; exit 2
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import harness, pytest, ruff' 2>/dev/null || [[ pyproject.toml -nt .state/pip-stamp ]]; then
  log "installing the harness (pip install -e .[dev])"
  "$PY" -m pip install -q --disable-pip-version-check -e '.[dev]'
  mkdir -p .state && touch .state/pip-stamp
fi

if [[ -f workloads/Makefile ]]; then
  log "building workloads"
  make -s -C workloads
fi
log "done"
