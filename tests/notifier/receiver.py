"""A real status-callback receiver for the tests: an aiohttp server on a free local port,
over HTTPS with a certificate from a CA made here (`LocalCa`, written to a PEM file the
notifier trusts through `SSL_CERT_FILE`) or plain http to 127.0.0.1. Every request is kept
whole (path, headers, raw body) so a test can verify its Standard Webhooks signature; a
`script` of (status, headers) replies for a path is used first, then 204."""
from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.processes import free_port


def _cert(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if not ca:
        builder = (builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    else:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class LocalCa:
    """A CA (its PEM at `ca_file`) and a server certificate for 127.0.0.1 / localhost."""
    directory: Path

    def __post_init__(self) -> None:
        ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Safeguard test CA")])
        ca = _cert("Safeguard test CA", ca_key, ca_name, ca_key, ca=True)
        leaf = _cert("127.0.0.1", leaf_key, ca_name, ca_key, ca=False)
        pem = serialization.Encoding.PEM
        self.ca_file = self.directory / "test-ca.pem"
        self.ca_file.write_bytes(ca.public_bytes(pem))
        self.cert_file, self.key_file = self.directory / "server.pem", self.directory / "server.key"
        self.cert_file.write_bytes(leaf.public_bytes(pem))
        self.key_file.write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # the event loop's clock


@dataclass
class Receiver:
    """`async with Receiver(ca) as r:` (https) or `Receiver()` (http); `stop()`/`start()` again
    on the same port to be down and back."""
    ca: LocalCa | None = None
    port: int = field(default_factory=free_port)
    requests: list[Received] = field(default_factory=list)
    script: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))
    _runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"{'https' if self.ca else 'http'}://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == "/" + path.lstrip("/")]

    async def _post(self, request: web.Request) -> web.Response:
        self.requests.append(Received(request.path, dict(request.headers), await request.read(),
                                     asyncio.get_running_loop().time()))
        if self.script[request.path]:
            status, headers = self.script[request.path].popleft()
            return web.Response(status=status, headers=headers)
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        ssl_context = self.ca.server_context() if self.ca else None
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=ssl_context).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, path: str, count: int, timeout: float = 20.0) -> list[Received]:
        async with asyncio.timeout(timeout):
            while len(self.at(path)) < count:
                await asyncio.sleep(0.05)
        return self.at(path)

    async def __aenter__(self) -> Receiver:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()
