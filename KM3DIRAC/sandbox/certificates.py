"""An own certificate authority for the local sandbox, made with openssl: CA, host certificate (CN=localhost, SAN
localhost/127.0.0.1), user certificate, and the CA directory DIRAC reads (``<hash>.0``)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from KM3DIRAC.sandbox.processes import ServiceStartError

ORGANISATION = "KM3DIRAC-Sandbox"
CA_SUBJECT = f"/O={ORGANISATION}/CN=KM3DIRAC Sandbox CA"
HOST_SUBJECT = f"/O={ORGANISATION}/CN=localhost"
VALIDITY_DAYS = "30"

HOST_EXTENSIONS = """basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
"""
USER_EXTENSIONS = """basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment, dataEncipherment
extendedKeyUsage = clientAuth
"""


def user_subject(user_name: str) -> str:
    return f"/O={ORGANISATION}/CN={user_name}"



@dataclass(frozen=True)
class SandboxCertificates:
    directory: Path

    @property
    def ca_dir(self) -> Path:
        return self.directory / "certificates"

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def host_cert(self) -> Path:
        return self.directory / "hostcert.pem"

    @property
    def host_key(self) -> Path:
        return self.directory / "hostkey.pem"

    @property
    def user_cert(self) -> Path:
        return self.directory / "usercert.pem"

    @property
    def user_key(self) -> Path:
        return self.directory / "userkey.pem"

    @property
    def user_proxy(self) -> Path:
        return self.directory / "user-proxy.pem"

    def certificate_of(self, user_name: str) -> tuple[Path, Path]:
        """(certificate, key) of another user of the sandbox's CA (made by :func:`make_user_certificate`)."""
        directory = self.directory / "users" / user_name
        return directory / "usercert.pem", directory / "userkey.pem"

    def exist(self) -> bool:
        return all(path.exists() for path in (self.ca_cert, self.host_cert, self.host_key, self.user_cert,
                                              self.user_key))


def _openssl(*args: str) -> str:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceStartError(f"certificates: openssl {args[0]} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def _signed_certificate(certs: SandboxCertificates, subject: str, cert: Path, key: Path, extensions: str) -> None:
    request = cert.with_suffix(".csr")
    extensions_file = cert.with_suffix(".ext")
    extensions_file.write_text(extensions)
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request),
             "-subj", subject)
    _openssl("x509", "-req", "-in", str(request), "-CA", str(certs.ca_cert), "-CAkey", str(certs.ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", VALIDITY_DAYS, "-sha256", "-extfile", str(extensions_file))
    key.chmod(0o400)
    request.unlink()
    extensions_file.unlink()


def make_certificates(directory: Path, user_name: str) -> SandboxCertificates:
    """Create (once) the CA, the host and the user certificate below ``directory``."""
    certs = SandboxCertificates(directory)
    if certs.exist():
        return certs
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(certs.ca_key), "-out",
             str(certs.ca_cert), "-days", VALIDITY_DAYS, "-subj", CA_SUBJECT, "-sha256",
             "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _signed_certificate(certs, HOST_SUBJECT, certs.host_cert, certs.host_key, HOST_EXTENSIONS)
    _signed_certificate(certs, user_subject(user_name), certs.user_cert, certs.user_key, USER_EXTENSIONS)
    certs.ca_dir.mkdir(exist_ok=True)
    ca_hash = _openssl("x509", "-noout", "-subject_hash", "-in", str(certs.ca_cert)).strip()
    (certs.ca_dir / f"{ca_hash}.0").write_bytes(certs.ca_cert.read_bytes())
    return certs


def make_user_certificate(certs: SandboxCertificates, user_name: str) -> tuple[Path, Path]:
    """(Once) a certificate and key for another user of the sandbox's CA: ``<name>/usercert.pem``, ``userkey.pem``."""
    cert, key = certs.certificate_of(user_name)
    if not (cert.exists() and key.exists()):
        cert.parent.mkdir(parents=True, exist_ok=True)
        _signed_certificate(certs, user_subject(user_name), cert, key, USER_EXTENSIONS)
    return cert, key


def make_proxy(cert: Path, key: Path, proxy: Path, group: str, hours: int = 12) -> Path:
    """A DIRAC proxy of ``cert`` for DIRAC ``group`` (what ``dirac-proxy-init -g <group>`` makes), mode 600."""
    from DIRAC.Core.Security.X509Chain import X509Chain

    chain = X509Chain()
    for loaded in (chain.loadChainFromFile(str(cert)), chain.loadKeyFromFile(str(key))):
        if not loaded["OK"]:
            raise ServiceStartError(f"certificates: {cert}: {loaded['Message']}")
    made = chain.generateProxyToFile(str(proxy), hours * 3600, diracGroup=group)
    if not made["OK"]:
        raise ServiceStartError(f"certificates: proxy of {cert} for {group}: {made['Message']}")
    proxy.chmod(0o600)
    return proxy
