"""Key files, Ed25519 signatures and sealed envelopes (DESIGN §5).

An envelope holds content encrypted once with a random per-call data key
(XChaCha20-Poly1305); the data key is sealed (X25519 ``SealedBox``) to each recipient's
public key under a key id. The associated data binds the envelope to where it belongs:

* version 2 (sealed today): ``"safeguard-relay/v2|{referral_id}|{key_version}|{reference}|{section}"``;
  the envelope also carries its ``reference`` and ``section`` in clear, so an opener that
  expects a referral's ``contacts`` refuses its ``content`` (or another referral's
  contacts) before decrypting, and a changed label fails authentication. None of the four
  fields may contain ``|`` (`LABEL`), so the string is unambiguous.
* version 1 (stored before): ``"{referral_id}|{key_version}"``; still opened, and
  upgraded to version 2 by `rewrap` when it is given the reference and section.

DESIGN §5 asks for the referral id and key version as associated data; version 2 binds
more. shared/web/static/sealed.js builds the same strings. Rotation re-seals the data key
(`rewrap`); destroying every sealed copy of the data key (`shred`) makes the content
unreadable for good.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.utils
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.secret import Aead
from nacl.signing import SigningKey, VerifyKey

ENVELOPE_VERSION = 2  # what `seal` writes
OPENS = (1, 2)  # what `open_sealed` opens
AAD_V2 = "safeguard-relay/v2"
LABEL = re.compile(r"[A-Za-z0-9._:/@+-]{0,200}")  # referral id, reference and section in a v2 envelope
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

def _label(value: Any, what: str) -> str:
    if not isinstance(value, str) or not LABEL.fullmatch(value):
        raise CryptoError(f"{what} must be up to 200 letters, digits or ._:/@+- (no '|')")
    return value


def _aad(referral_id: str, key_version: int, reference: str | None = None, section: str | None = None,
         *, v: int = ENVELOPE_VERSION) -> bytes:
    """The associated data of an envelope of version `v` (see the module's docstring)."""
    if v == 1:
        return f"{referral_id}|{key_version}".encode()
    parts = (AAD_V2, _label(referral_id, "referral id"), str(int(key_version)),
             _label(reference, "reference"), _label(section, "section"))
    return "|".join(parts).encode()


def _seal_key(data_key: bytes, recipients: Mapping[str, PublicKey]) -> list[dict[str, str]]:
    return [{"key_id": kid, "sealed_key": b64e(SealedBox(pk).encrypt(data_key))}
            for kid, pk in recipients.items()]


def _encrypt(data_key: bytes, plaintext: bytes, *, referral_id: str, key_version: int, reference: str,
             section: str, recipients: list[dict[str, str]]) -> dict[str, Any]:
    nonce = nacl.utils.random(Aead.NONCE_SIZE)
    aad = _aad(referral_id, key_version, reference, section)
    sealed = Aead(data_key).encrypt(plaintext, aad, nonce)
    return {"v": ENVELOPE_VERSION, "alg": ALG, "key_version": key_version, "reference": reference,
            "section": section, "nonce": b64e(nonce), "ciphertext": b64e(sealed.ciphertext),
            "recipients": recipients}


def seal(plaintext: bytes, *, referral_id: str, recipients: Mapping[str, PublicKey],
         key_version: int = 1, reference: str = "", section: str = "") -> dict[str, Any]:
    """Encrypt `plaintext` under a fresh data key sealed to every recipient, bound to the
    referral (`referral_id`, `reference`) and to the `section` it is stored as."""
    if not recipients:
        raise CryptoError("at least one recipient is required")
    data_key = nacl.utils.random(Aead.KEY_SIZE)
    return _encrypt(data_key, plaintext, referral_id=referral_id, key_version=key_version, reference=reference,
                    section=section, recipients=_seal_key(data_key, recipients))


def envelope_key_ids(envelope: Mapping[str, Any]) -> list[str]:
    """Key ids the data key is sealed to."""
    try:
        return [str(r["key_id"]) for r in envelope["recipients"]]
    except (KeyError, TypeError) as exc:
        raise CryptoError("malformed envelope") from exc


def envelope_version(envelope: Mapping[str, Any]) -> int:
    """1 or 2; CryptoError for anything else."""
    try:
        v, alg = envelope["v"], envelope["alg"]
    except (KeyError, TypeError) as exc:
        raise CryptoError("malformed envelope") from exc
    if type(v) is not int or v not in OPENS or alg != ALG:
        raise CryptoError("unsupported envelope")
    return v


def check_label(envelope: Mapping[str, Any], *, reference: str | None = None, section: str | None = None) -> None:
    """CryptoError unless a version 2 envelope names the expected `reference` and `section`
    (each checked when given). A version 1 envelope names neither and passes (compatibility)."""
    if envelope_version(envelope) == 1:
        return
    held = {"reference": envelope.get("reference"), "section": envelope.get("section")}
    if reference is not None and held["reference"] != reference:
        raise CryptoError(f"envelope is sealed for referral {held['reference']!r}, not {reference!r}")
    if section is not None and held["section"] != section:
        raise CryptoError(f"envelope is sealed as section {held['section']!r}, not {section!r}")


def _open_data_key(envelope: Mapping[str, Any], key_id: str, private_key: PrivateKey) -> bytes:
    envelope_version(envelope)
    try:
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


def _decrypt(envelope: Mapping[str, Any], data_key: bytes, referral_id: str) -> bytes:
    try:
        v = envelope_version(envelope)
        aad = _aad(referral_id, int(envelope["key_version"]), envelope.get("reference"), envelope.get("section"), v=v)
        nonce, ciphertext = b64d(envelope["nonce"]), b64d(envelope["ciphertext"])
        return Aead(data_key).decrypt(ciphertext, aad, nonce)
    except (nacl.exceptions.CryptoError, KeyError, TypeError, ValueError) as exc:
        raise CryptoError("envelope failed authentication") from exc


def open_sealed(envelope: Mapping[str, Any], *, referral_id: str, key_id: str, private_key: PrivateKey,
                reference: str | None = None, section: str | None = None) -> bytes:
    """Decrypt an envelope as recipient `key_id`; CryptoError on any failure, and (version 2)
    when it names another `reference` or `section` than the ones expected."""
    check_label(envelope, reference=reference, section=section)
    return _decrypt(envelope, _open_data_key(envelope, key_id, private_key), referral_id)


def rewrap(envelope: Mapping[str, Any], *, key_id: str, private_key: PrivateKey,
           add: Mapping[str, PublicKey], remove: Iterable[str] = (), referral_id: str | None = None,
           reference: str | None = None, section: str | None = None) -> dict[str, Any]:
    """New envelope with the data key also sealed to `add`, minus `remove`.

    A version 2 envelope (checked against `reference` and `section` when given) keeps its
    ciphertext untouched; only the data key is opened. A version 1 envelope given
    `referral_id`, `reference` and `section` is upgraded to version 2: its content is
    authenticated and decrypted in memory and encrypted again under the same data key with
    a fresh nonce and the version 2 associated data (the other recipients' entries stay valid).
    """
    check_label(envelope, reference=reference, section=section)
    data_key = _open_data_key(envelope, key_id, private_key)
    dropped = set(remove) | set(add)
    kept = [dict(r) for r in envelope["recipients"] if r["key_id"] not in dropped]
    recipients = kept + _seal_key(data_key, add)
    if envelope["v"] == 1 and referral_id is not None and reference is not None and section is not None:
        plaintext = _decrypt(envelope, data_key, referral_id)
        return _encrypt(data_key, plaintext, referral_id=referral_id, key_version=int(envelope["key_version"]),
                        reference=reference, section=section, recipients=recipients)
    new = copy.deepcopy(dict(envelope))
    new["recipients"] = recipients
    return new


def shred(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """Crypto-shred: drop every sealed copy of the data key; nobody can open it."""
    new = copy.deepcopy(dict(envelope))
    new["recipients"] = []
    return new
