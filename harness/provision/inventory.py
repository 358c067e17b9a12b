"""The lab inventory: which hosts, how to reach them, and their role variables.

```yaml
apiVersion: harness/v1
kind: Inventory
defaults:                      # every host gets these unless it sets its own
  user: root
  keyFile: keys/lab_ed25519    # relative paths are relative to this file
  knownHosts: keys/known_hosts
  hostKeyPolicy: reject        # reject (default) | accept-new
  connectTimeout: 10s
  python: /usr/bin/python3     # interpreter for the agent and the harness venv ("controller": this one)
  vars: {kubelet_profile: ../../profiles/local.yaml}
hosts:
  lab-a:
    address: 127.0.0.2
    port: 2222
    vars: {kubelet_cgroup_root: /lab-a, kubelet_healthz_port: 10348}
groups:
  kubelet-133: [lab-a]
```

Every error names the file and the field; unknown keys get a did-you-mean, and so do unknown
role variables (the names come from ``playbooks/group_vars/all.yml`` and every role's
``defaults/main.yml``; ``ansible_*`` connection variables are allowed as they are).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.config.durations import parse_duration
from harness.config.errors import first_error, load_yaml_mapping, safe_load
from harness.errors import InputError
from harness.hosts.ssh import SSHTarget

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
API_VERSION = "harness/v1"
# role variables holding a path on the controller: resolved relative to the inventory file
PATH_VARS = ("kubelet_profile", "kubelet_binary_src")
_NAME = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    user: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    key_file: str | None = Field(None, alias="keyFile")
    known_hosts: str | None = Field(None, alias="knownHosts")
    host_key_policy: Literal["reject", "accept-new"] | None = Field(None, alias="hostKeyPolicy")
    connect_timeout_s: float | None = Field(None, alias="connectTimeout", gt=0)
    python: str | None = None
    become: bool | None = None
    vars: dict[str, Any] = Field(default_factory=dict)

    @field_validator("connect_timeout_s", mode="before")
    @classmethod
    def _timeout(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v


class Defaults(_Common):
    pass


class HostEntry(_Common):
    address: str

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?", v):
                raise ValueError(f"{v!r} is neither an IP address nor a host name") from None
        return v


class InventoryFile(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    api_version: Literal["harness/v1"] = Field(alias="apiVersion")
    kind: Literal["Inventory"]
    defaults: Defaults = Field(default_factory=Defaults)
    hosts: dict[str, HostEntry] = Field(min_length=1)
    groups: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self) -> InventoryFile:
        for name in self.hosts:
            if not re.fullmatch(_NAME, name):
                raise ValueError(f"host name {name!r} must be letters, digits, '-', '_' or '.'")
        for g in self.groups:
            if not re.fullmatch(r"^[A-Za-z_][A-Za-z0-9_]*$", g) or g in ("all", "ungrouped"):
                raise ValueError(
                    f"group name {g!r} must be a valid Ansible group name (letters, digits, '_')"
                )
        return self


class LabHost(BaseModel):
    """One host, fully resolved (defaults applied, paths absolute)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    name: str
    target: SSHTarget
    become: bool = False
    vars: dict[str, Any] = Field(default_factory=dict)
    groups: list[str] = Field(default_factory=list)


class Inventory(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    source: str
    hosts: dict[str, LabHost]
    groups: dict[str, list[str]] = Field(default_factory=dict)

    def select(self, limit: list[str] | None) -> list[LabHost]:
        """Hosts named by ``limit`` (host or group names), all when empty; unknown names are errors."""
        if not limit:
            return list(self.hosts.values())
        out: dict[str, LabHost] = {}
        for item in limit:
            for part in item.split(","):
                part = part.strip()
                if not part:
                    continue
                if part in self.hosts:
                    out[part] = self.hosts[part]
                elif part in self.groups:
                    for h in self.groups[part]:
                        out[h] = self.hosts[h]
                elif part == "all":
                    out.update(self.hosts)
                else:
                    known = list(self.hosts) + list(self.groups)
                    hint = difflib.get_close_matches(part, known, n=1)
                    raise InputError(
                        self.source,
                        "--limit",
                        f"no host or group {part!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""),
                    )
        return list(out.values())

    def ansible_inventory(
        self, hosts: list[LabHost] | None = None, extra_host_vars: dict[str, dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The YAML inventory handed to Ansible: every variable as a host variable.

        Host variables outrank ``playbooks/group_vars/all.yml``; inventory group variables would not.
        """
        chosen = hosts if hosts is not None else list(self.hosts.values())
        names = {h.name for h in chosen}
        out: dict[str, Any] = {"all": {"hosts": {}, "children": {}}}
        for h in chosen:
            t = h.target
            common = " ".join(t.openssh_options())
            hv: dict[str, Any] = {
                "ansible_host": t.address,
                "ansible_port": t.port,
                "ansible_user": t.user,
                "ansible_ssh_private_key_file": str(t.key_file),
                "ansible_ssh_common_args": common,
                "lab_become": h.become,
                **h.vars,
                **((extra_host_vars or {}).get(h.name, {})),
            }
            out["all"]["hosts"][h.name] = hv
        for g, members in self.groups.items():
            sel = [m for m in members if m in names]
            if sel:
                out["all"]["children"][g] = {"hosts": {m: None for m in sel}}
        if not out["all"]["children"]:
            del out["all"]["children"]
        return out


def known_role_variables(playbooks: Path = PLAYBOOKS) -> set[str]:
    """Every variable the playbooks declare: group_vars/all.yml and each role's defaults."""
    names: set[str] = set()
    files = [playbooks / "group_vars" / "all.yml", *sorted(playbooks.glob("roles/*/defaults/main.yml"))]
    for f in files:
        data = safe_load(f.read_text()) or {}
        if isinstance(data, dict):
            names.update(str(k) for k in data)
    return names


def _check_vars(source: str, field: str, values: dict[str, Any], known: set[str]) -> None:
    for k in values:
        if k.startswith("ansible_") or k in known:
            continue
        hint = difflib.get_close_matches(k, sorted(known), n=1)
        raise InputError(
            source,
            f"{field}.{k}",
            "unknown role variable"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + "; the playbooks declare theirs in playbooks/roles/*/defaults/main.yml",
        )


def _input_error(exc: ValidationError, source: str) -> InputError:
    err = first_error(exc, source, InventoryFile)
    e0 = exc.errors()[0]
    loc = e0["loc"]
    if e0["type"] == "extra_forbidden" and "did you mean" not in err.reason and loc:
        # first_error cannot walk into the hosts mapping (host names are keys, not fields)
        model: type[BaseModel] = (
            HostEntry if loc[0] == "hosts" else Defaults if loc[0] == "defaults" else InventoryFile
        )
        names = [f.alias or n for n, f in model.model_fields.items()]
        hint = difflib.get_close_matches(str(loc[-1]), names, n=1)
        if hint:
            return InputError(source, err.field, f"unknown field (did you mean {hint[0]!r}?)")
    return err


def _abs(base: Path, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else (base / q).resolve()


def parse_inventory(data: dict[str, Any], source: str, base: Path | None = None) -> Inventory:
    try:
        inv = InventoryFile.model_validate(data)
    except ValidationError as exc:
        raise _input_error(exc, source) from None
    base = base or Path(source).resolve().parent
    known = known_role_variables()
    _check_vars(source, "defaults.vars", inv.defaults.vars, known)
    d = inv.defaults
    hosts: dict[str, LabHost] = {}
    seen: dict[tuple[str, int], str] = {}
    for name, h in inv.hosts.items():
        field = f"hosts.{name}"
        _check_vars(source, f"{field}.vars", h.vars, known)

        def pick(attr: str, default: Any, h: HostEntry = h) -> Any:
            v = getattr(h, attr)
            if v is None:
                v = getattr(d, attr)
            return default if v is None else v

        port = int(pick("port", 22))
        key = (h.address, port)
        if key in seen:
            raise InputError(source, f"{field}.address", f"{h.address}:{port} is also host {seen[key]!r}")
        seen[key] = name
        key_file = pick("key_file", None)
        if key_file is None:
            raise InputError(source, f"{field}.keyFile", "missing: set keyFile for the host or in defaults")
        known_hosts = pick("known_hosts", None)
        if known_hosts is None:
            # never the user's ~/.ssh/known_hosts implicitly: the lab's host keys are a file the
            # inventory names (OpenSSH's UserKnownHostsFile for Ansible too)
            raise InputError(
                source,
                f"{field}.knownHosts",
                "missing: set knownHosts for the host or in defaults (the file of the lab's host keys; "
                "~/.ssh/known_hosts is not used unless named)",
            )
        python = str(pick("python", "/usr/bin/python3"))
        if python == "controller":
            python = sys.executable
        merged_vars = {**d.vars, **h.vars}
        for pv in PATH_VARS:
            if isinstance(merged_vars.get(pv), str) and merged_vars[pv]:
                where = f"{field}.vars.{pv}" if pv in h.vars else f"defaults.vars.{pv}"
                p = _abs(base, merged_vars[pv])
                if not p.is_file():
                    raise InputError(source, where, f"{p} does not exist")
                merged_vars[pv] = str(p)
        merged_vars.setdefault("harness_python", python)
        target = SSHTarget(
            name=name,
            address=h.address,
            port=port,
            user=str(pick("user", "root")),
            key_file=_abs(base, key_file),
            known_hosts=_abs(base, str(known_hosts)),
            host_key_policy=pick("host_key_policy", "reject"),
            connect_timeout=float(pick("connect_timeout_s", 10.0)),
            python=python,
        )
        hosts[name] = LabHost(name=name, target=target, become=bool(pick("become", False)), vars=merged_vars)
    for g, members in inv.groups.items():
        for i, m in enumerate(members):
            if m not in hosts:
                hint = difflib.get_close_matches(m, list(hosts), n=1)
                raise InputError(
                    source,
                    f"groups.{g}[{i}]",
                    f"no host {m!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""),
                )
            hosts[m].groups.append(g)
    return Inventory(source=source, hosts=hosts, groups=dict(inv.groups))


def load_inventory(path: str | Path) -> Inventory:
    p = Path(path)
    return parse_inventory(load_yaml_mapping(p), str(p), p.resolve().parent)
