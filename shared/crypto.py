"""Key files, Ed25519 signatures and sealed envelopes (DESIGN §5).

An envelope holds content encrypted once with a random per-call data key
(XChaCha20-Poly1305, associated data ``"{referral_id}|{key_version}"``); the data
key is sealed (X25519 ``SealedBox``) to each recipient's public key under a key id.
Rotation re-seals only the data key (`rewrap`); destroying every sealed copy of the
data key (`shred`) makes the content unreadable for good.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.utils
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.secret import Aead
from nacl.signing import SigningKey, VerifyKey

ENVELOPE_VERSION = 1
ALG = "XChaCha20-Poly1305"
KEY_SIZE = 32


class CryptoError(Exception):
    """A key, signature or envelope could not be used. Never carries secrets."""


def b64e(data: bytes) -> str:
    """Standard base64 with padding."""
    return base64.b64encode(data).decode("ascii")


def b64d(text: str) -> bytes:
    """Strict standard base64; raises CryptoError on anything else."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, AttributeError) as exc:
        raise CryptoError("invalid base64") from exc


# --- key files -------------------------------------------------------------------

def write_private_key(path: str | os.PathLike[str], raw: bytes) -> None:
    """Write a 32-byte key as one base64 line, mode 0600, replacing atomically.

    The data goes to a private temporary file (created 0600 by ``mkstemp``, which
    uses ``os.open(..., 0o600)``) that is then renamed over the target.
    """
    if len(raw) != KEY_SIZE:
        raise CryptoError(f"private key must be {KEY_SIZE} bytes")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write((b64e(raw) + "\n").encode("ascii"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_private_key(path: str | os.PathLike[str]) -> bytes:
    """Read a key file written by `write_private_key`; 32 raw bytes."""
    try:
        text = Path(path).read_text(encoding="ascii").strip()
        raw = b64d(text)
    except (OSError, UnicodeDecodeError, CryptoError) as exc:
        raise CryptoError(f"cannot read private key file {path}") from exc
    if len(raw) != KEY_SIZE:
        raise CryptoError(f"private key file {path} does not hold {KEY_SIZE} bytes")
    return raw


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    """Ed25519 signing key from a seed file."""
    return SigningKey(read_private_key(path))


def load_private_sealing_key(path: str | os.PathLike[str]) -> PrivateKey:
    """X25519 private key from a key file."""
    return PrivateKey(read_private_key(path))


def _raw_public(text: str, what: str) -> bytes:
    raw = b64d(text)
    if len(raw) != KEY_SIZE:
        raise CryptoError(f"{what} must be {KEY_SIZE} bytes")
    return raw


def verify_key_from_b64(text: str) -> VerifyKey:
    """Ed25519 verify key from base64."""
    return VerifyKey(_raw_public(text, "verify key"))


def public_key_from_b64(text: str) -> PublicKey:
    """X25519 public key from base64."""
    return PublicKey(_raw_public(text, "public key"))


def generate_signing_key() -> SigningKey:
    return SigningKey.generate()


def generate_sealing_key() -> PrivateKey:
    return PrivateKey.generate()


# --- signatures ------------------------------------------------------------------

def sign(key: SigningKey, data: bytes) -> bytes:
    """Detached 64-byte Ed25519 signature."""
    return key.sign(data).signature


def verify(key: VerifyKey, data: bytes, signature: bytes) -> None:
    """Raise CryptoError unless `signature` is valid for `data`."""
    try:
        key.verify(data, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, TypeError) as exc:
        raise CryptoError("bad signature") from exc


# --- envelopes -------------------------------------------------------------------

def _aad(referral_id: str, key_version: int) -> bytes:
    return f"{referral_id}|{key_version}".encode()


def _seal_key(data_key: bytes, recipients: Mapping[str, PublicKey]) -> list[dict[str, str]]:
    return [{"key_id": kid, "sealed_key": b64e(SealedBox(pk).encrypt(data_key))}
            for kid, pk in recipients.items()]


def seal(plaintext: bytes, *, referral_id: str, recipients: Mapping[str, PublicKey],
         key_version: int = 1) -> dict[str, Any]:
    """Encrypt `plaintext` under a fresh data key sealed to every recipient."""
    if not recipients:
        raise CryptoError("at least one recipient is required")
    data_key = nacl.utils.random(Aead.KEY_SIZE)
    nonce = nacl.utils.random(Aead.NONCE_SIZE)
    sealed = Aead(data_key).encrypt(plaintext, _aad(referral_id, key_version), nonce)
    return {"v": ENVELOPE_VERSION, "alg": ALG, "key_version": key_version,
            "nonce": b64e(nonce), "ciphertext": b64e(sealed.ciphertext),
            "recipients": _seal_key(data_key, recipients)}


def envelope_key_ids(envelope: Mapping[str, Any]) -> list[str]:
    """Key ids the data key is sealed to."""
    try:
        return [str(r["key_id"]) for r in envelope["recipients"]]
    except (KeyError, TypeError) as exc:
        raise CryptoError("malformed envelope") from exc


def _open_data_key(envelope: Mapping[str, Any], key_id: str, private_key: PrivateKey) -> bytes:
    try:
        if envelope["v"] != ENVELOPE_VERSION or envelope["alg"] != ALG:
            raise CryptoError("unsupported envelope")
        entry = next((r for r in envelope["recipients"] if r["key_id"] == key_id), None)
    except (KeyError, TypeError) as exc:
        raise CryptoError("malformed envelope") from exc
    if entry is None:
        raise CryptoError(f"envelope is not sealed to key id {key_id!r}")
    try:
        data_key = SealedBox(private_key).decrypt(b64d(entry["sealed_key"]))
    except (nacl.exceptions.CryptoError, KeyError, TypeError) as exc:
        raise CryptoError(f"cannot open data key for key id {key_id!r}") from exc
    if len(data_key) != Aead.KEY_SIZE:
        raise CryptoError("bad data key length")
    return data_key


def open_sealed(envelope: Mapping[str, Any], *, referral_id: str, key_id: str,
                private_key: PrivateKey) -> bytes:
    """Decrypt an envelope as recipient `key_id`; CryptoError on any failure."""
    data_key = _open_data_key(envelope, key_id, private_key)
    try:
        aad = _aad(referral_id, int(envelope["key_version"]))
        nonce, ciphertext = b64d(envelope["nonce"]), b64d(envelope["ciphertext"])
        return Aead(data_key).decrypt(ciphertext, aad, nonce)
    except (nacl.exceptions.CryptoError, KeyError, TypeError, ValueError) as exc:
        raise CryptoError("envelope failed authentication") from exc


def rewrap(envelope: Mapping[str, Any], *, key_id: str, private_key: PrivateKey,
           add: Mapping[str, PublicKey], remove: Iterable[str] = ()) -> dict[str, Any]:
    """New envelope with the data key also sealed to `add`, minus `remove`.

    Only the data key is opened; the ciphertext is copied untouched.
    """
    data_key = _open_data_key(envelope, key_id, private_key)
    dropped = set(remove) | set(add)
    new = copy.deepcopy(dict(envelope))
    new["recipients"] = [r for r in new["recipients"] if r["key_id"] not in dropped]
    new["recipients"].extend(_seal_key(data_key, add))
    return new


def shred(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """Crypto-shred: drop every sealed copy of the data key; nobody can open it."""
    new = copy.deepcopy(dict(envelope))
    new["recipients"] = []
    return new
