"""Sealed envelopes, key files and signatures (shared.crypto)."""
from __future__ import annotations

import json
import stat

import pytest

from shared import crypto
from shared.crypto import CryptoError

REFERRAL = "ref-0001"
CANARY = "CANARY-Jane-Doe-07700900123-lives-at-1-Example-Street"


@pytest.fixture
def keys() -> dict[str, crypto.PrivateKey]:
    return {name: crypto.generate_sealing_key() for name in ("la-social-care", "ctp-prevent", "other")}


def _sealed(keys, plaintext: bytes = CANARY.encode()) -> dict:
    recipients = {k: keys[k].public_key for k in ("la-social-care", "ctp-prevent")}
    return crypto.seal(plaintext, referral_id=REFERRAL, recipients=recipients)


def test_each_recipient_can_open(keys) -> None:
    env = _sealed(keys)
    for kid in ("la-social-care", "ctp-prevent"):
        assert crypto.open_sealed(env, referral_id=REFERRAL, key_id=kid, private_key=keys[kid]) == CANARY.encode()
    assert env["v"] == 2 and env["alg"] == "XChaCha20-Poly1305" and env["key_version"] == 1
    assert crypto.envelope_key_ids(env) == ["la-social-care", "ctp-prevent"]


def test_each_seal_uses_a_fresh_key_and_nonce(keys) -> None:
    a, b = _sealed(keys), _sealed(keys)
    assert a["nonce"] != b["nonce"] and a["ciphertext"] != b["ciphertext"]


def test_third_key_cannot_open(keys) -> None:
    env = _sealed(keys)
    with pytest.raises(CryptoError, match="not sealed to key id"):
        crypto.open_sealed(env, referral_id=REFERRAL, key_id="other", private_key=keys["other"])
    # Claiming a listed key id with the wrong private key fails as well.
    with pytest.raises(CryptoError):
        crypto.open_sealed(env, referral_id=REFERRAL, key_id="ctp-prevent", private_key=keys["other"])


def _flip(b64: str, index: int = 0) -> str:
    raw = bytearray(crypto.b64d(b64))
    raw[index] ^= 0x01
    return crypto.b64e(bytes(raw))


@pytest.mark.parametrize("field", ["ciphertext", "nonce"])
def test_tampering_fails(keys, field: str) -> None:
    env = _sealed(keys)
    env[field] = _flip(env[field])
    with pytest.raises(CryptoError, match="authentication"):
        crypto.open_sealed(env, referral_id=REFERRAL, key_id="ctp-prevent", private_key=keys["ctp-prevent"])


def test_associated_data_binds_referral_id_and_key_version(keys) -> None:
    env = _sealed(keys)
    with pytest.raises(CryptoError):
        crypto.open_sealed(env, referral_id="ref-0002", key_id="ctp-prevent", private_key=keys["ctp-prevent"])
    env["key_version"] = 2
    with pytest.raises(CryptoError):
        crypto.open_sealed(env, referral_id=REFERRAL, key_id="ctp-prevent", private_key=keys["ctp-prevent"])


def test_key_version_is_carried(keys) -> None:
    env = crypto.seal(b"x", referral_id=REFERRAL, recipients={"a": keys["other"].public_key}, key_version=7)
    assert env["key_version"] == 7
    assert crypto.open_sealed(env, referral_id=REFERRAL, key_id="a", private_key=keys["other"]) == b"x"


def test_rewrap_for_key_rotation(keys) -> None:
    old = _sealed(keys)
    new_key = crypto.generate_sealing_key()
    added = crypto.rewrap(old, key_id="ctp-prevent", private_key=keys["ctp-prevent"],
                          add={"ctp-prevent-2025": new_key.public_key})
    rotated = crypto.rewrap(added, key_id="ctp-prevent-2025", private_key=new_key, remove=["ctp-prevent"], add={})
    assert crypto.envelope_key_ids(rotated) == ["la-social-care", "ctp-prevent-2025"]
    assert rotated["ciphertext"] == old["ciphertext"] and rotated["nonce"] == old["nonce"]
    assert crypto.open_sealed(rotated, referral_id=REFERRAL, key_id="ctp-prevent-2025",
                              private_key=new_key) == CANARY.encode()
    with pytest.raises(CryptoError):
        crypto.open_sealed(rotated, referral_id=REFERRAL, key_id="ctp-prevent", private_key=keys["ctp-prevent"])
    # The original envelope is untouched and still opens with the old key.
    assert crypto.envelope_key_ids(old) == ["la-social-care", "ctp-prevent"]
    assert crypto.open_sealed(old, referral_id=REFERRAL, key_id="ctp-prevent",
                              private_key=keys["ctp-prevent"]) == CANARY.encode()


def test_rewrap_needs_a_working_key(keys) -> None:
    with pytest.raises(CryptoError):
        crypto.rewrap(_sealed(keys), key_id="ctp-prevent", private_key=keys["other"],
                      add={"x": keys["other"].public_key})


def test_shredded_envelope_opens_for_nobody(keys) -> None:
    env = _sealed(keys)
    shredded = crypto.shred(env)
    assert shredded["recipients"] == [] and shredded["ciphertext"] == env["ciphertext"]
    for kid in ("la-social-care", "ctp-prevent"):
        with pytest.raises(CryptoError):
            crypto.open_sealed(shredded, referral_id=REFERRAL, key_id=kid, private_key=keys[kid])
    assert crypto.envelope_key_ids(env) == ["la-social-care", "ctp-prevent"]  # input not mutated


def test_plaintext_never_appears_in_serialised_envelope(keys) -> None:
    text = json.dumps(_sealed(keys))
    assert CANARY not in text
    assert crypto.b64e(CANARY.encode()) not in text
    assert "Jane-Doe" not in text


def test_key_file_mode_0600_and_round_trip(tmp_path) -> None:
    key = crypto.generate_signing_key()
    path = tmp_path / "keys" / "nested" / "intake.key"
    crypto.write_private_key(path, bytes(key))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert crypto.read_private_key(path) == bytes(key)
    assert bytes(crypto.load_signing_key(path)) == bytes(key)
    sealing = crypto.generate_sealing_key()
    crypto.write_private_key(path, bytes(sealing))  # overwrite keeps 0600
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert crypto.load_private_sealing_key(path).public_key == sealing.public_key
    assert [p.name for p in path.parent.iterdir()] == ["intake.key"]  # no temp files left


def test_key_file_replaces_a_world_readable_file(tmp_path) -> None:
    path = tmp_path / "old.key"
    path.write_text("old\n")
    path.chmod(0o644)
    crypto.write_private_key(path, bytes(32))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert crypto.read_private_key(path) == bytes(32)


def test_bad_key_files_name_the_path(tmp_path) -> None:
    short = tmp_path / "short.key"
    short.write_text(crypto.b64e(b"x" * 31) + "\n")
    with pytest.raises(CryptoError, match="short.key"):
        crypto.read_private_key(short)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not base64 !!\n")
    with pytest.raises(CryptoError, match="garbage.key"):
        crypto.read_private_key(garbage)
    with pytest.raises(CryptoError, match="missing.key"):
        crypto.read_private_key(tmp_path / "missing.key")
    with pytest.raises(CryptoError):
        crypto.write_private_key(tmp_path / "k", b"short")


def test_public_keys_from_b64() -> None:
    signing, sealing = crypto.generate_signing_key(), crypto.generate_sealing_key()
    assert crypto.verify_key_from_b64(crypto.b64e(bytes(signing.verify_key))) == signing.verify_key
    assert crypto.public_key_from_b64(crypto.b64e(bytes(sealing.public_key))) == sealing.public_key
    for bad in ("", "@@@", crypto.b64e(b"x" * 31)):
        with pytest.raises(CryptoError):
            crypto.verify_key_from_b64(bad)
        with pytest.raises(CryptoError):
            crypto.public_key_from_b64(bad)


def test_sign_and_verify() -> None:
    key = crypto.generate_signing_key()
    sig = crypto.sign(key, b"message")
    assert len(sig) == 64
    crypto.verify(key.verify_key, b"message", sig)
    with pytest.raises(CryptoError):
        crypto.verify(key.verify_key, b"messagE", sig)
    with pytest.raises(CryptoError):
        crypto.verify(crypto.generate_signing_key().verify_key, b"message", sig)
    with pytest.raises(CryptoError):
        crypto.verify(key.verify_key, b"message", sig[:10])


def test_b64_round_trip_and_strictness() -> None:
    assert crypto.b64d(crypto.b64e(b"\x00\xffabc")) == b"\x00\xffabc"
    with pytest.raises(CryptoError):
        crypto.b64d("a-b_")
