"""The control plane's certificates: one CA, the API server's serving certificate, and client certificates (the API
server authenticates a client certificate's CN as the user and its O as groups)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALID = dt.timedelta(days=2)


class Pki:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recsys-test-ca")])
        self._ca = (self._builder(name, self._ca_key.public_key(), issuer=name)
                    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                    .sign(self._ca_key, hashes.SHA256()))
        self.ca = self._write("ca.crt", self._ca.public_bytes(serialization.Encoding.PEM))

    def serving(self, name: str, ips: list[str], dns: list[str]) -> tuple[Path, Path]:
        """A serving certificate for ``ips`` and ``dns`` names; (certificate, key) paths."""
        sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips] + [x509.DNSName(d) for d in dns]
        return self._issue(name, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]),
                           ExtendedKeyUsageOID.SERVER_AUTH, x509.SubjectAlternativeName(sans))

    def client(self, user: str, groups: tuple[str, ...] = ()) -> tuple[Path, Path]:
        """A client certificate the API server reads as ``user`` in ``groups``; (certificate, key) paths."""
        subject = x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups),
                             x509.NameAttribute(NameOID.COMMON_NAME, user)])
        return self._issue(user.replace(":", "-"), subject, ExtendedKeyUsageOID.CLIENT_AUTH)

    def service_account_keys(self) -> tuple[Path, Path]:
        """The key pair that signs service account tokens; (public, private) paths."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        return self._write("sa.pub", public), self._write("sa.key", _pem(key))

    def _issue(self, file_stem: str, subject: x509.Name, usage, sans: x509.SubjectAlternativeName | None = None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (self._builder(subject, key.public_key(), issuer=self._ca.subject)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans is not None:
            builder = builder.add_extension(sans, critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        return (self._write(f"{file_stem}.crt", cert.public_bytes(serialization.Encoding.PEM)),
                self._write(f"{file_stem}.key", _pem(key)))

    @staticmethod
    def _builder(subject: x509.Name, public_key, issuer: x509.Name) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.UTC)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + _VALID))

    def _write(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
