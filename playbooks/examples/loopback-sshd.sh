#!/usr/bin/env bash
# Start or stop the two loopback "lab hosts" of loopback-lab.yaml: /usr/sbin/sshd on
# 127.0.0.2:2222 and 127.0.0.3:2222, each with its own host key, accepting .lab/client_ed25519
# for root. Keys, configs, logs and pid files live in playbooks/examples/.lab/ (git-ignored).
# Processes are stopped by the pid in their pid file.
set -euo pipefail
cd "$(dirname "$0")"
LAB=$PWD/.lab
HOSTS=("lab-a 127.0.0.2" "lab-b 127.0.0.3")
PORT=2222

start() {
  mkdir -p "$LAB" /run/sshd
  [[ -f $LAB/client_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C harness-lab-client -f "$LAB/client_ed25519"
  : > "$LAB/known_hosts.new"
  for h in "${HOSTS[@]}"; do
    read -r name addr <<<"$h"
    d=$LAB/$name
    mkdir -p "$d"
    [[ -f $d/ssh_host_ed25519_key ]] || ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$d/ssh_host_ed25519_key"
    cp "$LAB/client_ed25519.pub" "$d/authorized_keys"
    cat > "$d/sshd_config" <<CFG
ListenAddress $addr:$PORT
HostKey $d/ssh_host_ed25519_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
CFG
    echo "[$addr]:$PORT $(cut -d' ' -f1,2 "$d/ssh_host_ed25519_key.pub")" >> "$LAB/known_hosts.new"
    if [[ -f $d/sshd.pid ]] && kill -0 "$(cat "$d/sshd.pid")" 2>/dev/null; then
      echo "$name: sshd already runs (pid $(cat "$d/sshd.pid"))"
    else
      rm -f "$d/sshd.pid"
      /usr/sbin/sshd -f "$d/sshd_config" -E "$d/sshd.log"
      for _ in $(seq 50); do [[ -s $d/sshd.pid ]] && break; sleep 0.1; done
      echo "$name: sshd on $addr:$PORT (pid $(cat "$d/sshd.pid"))"
    fi
  done
  mv "$LAB/known_hosts.new" "$LAB/known_hosts"
}

stop() {
  for h in "${HOSTS[@]}"; do
    read -r name _ <<<"$h"
    pidfile=$LAB/$name/sshd.pid
    if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill "$(cat "$pidfile")" && echo "$name: sshd stopped"
      rm -f "$pidfile"
    fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
