"""Credentials of the local cluster, made with ``cryptography`` (no hand-rolled crypto, no openssl CLI).

One CA signs everything, as ``hack/local-up-cluster.sh`` does with ``ENABLE_SINGLE_CA_SIGNER``:

* ``apiserver``: serving certificate for ``127.0.0.1`` / ``localhost`` / ``kubernetes.default.svc``;
* ``admin``: the harness, ``O=system:masters`` (all rights under RBAC);
* ``kubelet``: ``CN=system:node:<node>``, ``O=system:nodes`` (what the Node authorizer expects);
* ``kubelet-serving``: the kubelet's own serving certificate on 127.0.0.1:10250;
* ``apiserver-kubelet-client``: the apiserver calling kubelets (CN kube-apiserver);
* ``etcd-server`` / ``etcd-peer``: etcd's serving certificates for clients and its peer listener on
  127.0.0.1 (etcd asks every client and peer for a certificate of this CA: ``--client-cert-auth``,
  ``--peer-client-cert-auth``), ``apiserver-etcd-client``: the apiserver's client certificate;
* ``sa.key``: the service-account signing key (``--service-account-signing-key-file``).

Keys are ECDSA P-256 (accepted by Go's crypto/tls and the apiserver), files are 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)


@dataclass
class Pki:
    dir: Path

    def crt(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    @property
    def ca(self) -> Path:
        return self.crt("ca")

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _load_ca(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    key = serialization.load_pem_private_key(pki.key("ca").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def ensure_pki(directory: Path, node_name: str) -> Pki:
    """Create what is missing (existing files are kept: restarting ``up`` keeps its credentials)."""
    pki = Pki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    if not pki.ca.exists() or not pki.key("ca").exists():
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name("harness-local-cluster-ca")
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + VALIDITY * 10)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write(pki.key("ca"), _key_pem(key))
        _write(pki.ca, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    ca_cert, ca_key = _load_ca(pki)

    def leaf(
        name: str,
        cn: str,
        orgs: tuple[str, ...],
        server: bool,
        sans: list[x509.GeneralName],
        *,
        client_too: bool = False,
    ) -> None:
        if pki.crt(name).exists() and pki.key(name).exists():
            return
        key = ec.generate_private_key(ec.SECP256R1())
        usage = [ExtendedKeyUsageOID.SERVER_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]
        if client_too:
            usage.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        b = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, orgs))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        _write(pki.key(name), _key_pem(key))
        _write(pki.crt(name), cert.public_bytes(serialization.Encoding.PEM), 0o644)

    loopback: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    leaf(
        "apiserver",
        "kube-apiserver",
        (),
        True,
        [*loopback, x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default.svc")],
    )
    leaf("admin", "harness", ("system:masters",), False, [])
    leaf("kubelet", f"system:node:{node_name}", ("system:nodes",), False, [])
    leaf("kubelet-serving", node_name, (), True, [*loopback, x509.DNSName(node_name)])
    leaf("apiserver-kubelet-client", "kube-apiserver", ("system:masters",), False, [])
    # etcd serves clients and its (single) peer over TLS and asks both for a certificate of this CA
    leaf("etcd-server", "etcd", (), True, loopback)
    leaf("etcd-peer", "etcd-peer", (), True, loopback, client_too=True)
    leaf("apiserver-etcd-client", "kube-apiserver-etcd-client", (), False, [])
    if not pki.sa_key.exists():
        # service-account tokens: the apiserver accepts RSA or ECDSA; RSA 2048 as upstream's local-up.
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write(pki.sa_key, _key_pem(sa))
        _write(
            pki.sa_pub,
            sa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            0o644,
        )
    return pki


def kubeconfig(server: str, pki: Pki, user: str, cert: str) -> str:
    """A kubeconfig with file references (readable YAML, no embedded secrets)."""
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: harness\n  cluster:\n    server: {server}\n    certificate-authority: {pki.ca}\n"
        f"users:\n- name: {user}\n  user:\n    client-certificate: {pki.crt(cert)}\n"
        f"    client-key: {pki.key(cert)}\n"
        f"contexts:\n- name: harness\n  context:\n    cluster: harness\n    user: {user}\n"
        "current-context: harness\n"
    )
