"""Envelope version 2 (issue 18 #10): the associated data binds the referral id, key version,
reference and section; the envelope names its reference and section, so an opener expecting one
refuses another; version 1 envelopes already stored still open, and `rewrap` upgrades them."""
from __future__ import annotations

import nacl.utils
import pytest
from nacl.secret import Aead

from shared import crypto
from shared.crypto import CryptoError

RID, REF = "0b7c4c52-5d43-4a8e-9a52-3c1f0e4d2a11", "PRV-2026-000001"
OTHER_RID, OTHER_REF = "5f0e6a39-93a1-4f6e-8f0c-0d5c55b1c2e7", "PRV-2026-000002"


@pytest.fixture
def keys() -> dict[str, crypto.PrivateKey]:
    return {name: crypto.generate_sealing_key() for name in ("la-1", "force-1", "other")}


def _pub(keys, *names: str):
    return {n: keys[n].public_key for n in names or ("la-1", "force-1")}


def _seal(keys, text: bytes, section: str, *, rid: str = RID, ref: str = REF) -> dict:
    return crypto.seal(text, referral_id=rid, recipients=_pub(keys), reference=ref, section=section)


def _open(env, keys, *, rid: str = RID, ref: str | None = REF, section: str | None) -> bytes:
    return crypto.open_sealed(env, referral_id=rid, key_id="la-1", private_key=keys["la-1"], reference=ref,
                              section=section)


def seal_v1(plaintext: bytes, referral_id: str, recipients) -> dict:
    """An envelope as `seal` wrote it before version 2 (associated data "{referral_id}|{key_version}")."""
    data_key, nonce = nacl.utils.random(Aead.KEY_SIZE), nacl.utils.random(Aead.NONCE_SIZE)
    sealed = Aead(data_key).encrypt(plaintext, f"{referral_id}|1".encode(), nonce)
    return {"v": 1, "alg": crypto.ALG, "key_version": 1, "nonce": crypto.b64e(nonce),
            "ciphertext": crypto.b64e(sealed.ciphertext),
            "recipients": [{"key_id": k, "sealed_key": crypto.b64e(crypto.SealedBox(p).encrypt(data_key))}
                           for k, p in recipients.items()]}


def test_a_version_2_envelope_names_its_reference_and_section_and_opens_where_it_belongs(keys) -> None:
    env = _seal(keys, b"narrative", "content")
    assert (env["v"], env["reference"], env["section"]) == (2, REF, "content")
    assert _open(env, keys, section="content") == b"narrative"
    assert _open(env, keys, ref=None, section=None) == b"narrative"  # an opener that expects nothing


def test_two_sections_swapped_within_a_referral_are_refused(keys) -> None:
    content, contacts = _seal(keys, b"narrative", "content"), _seal(keys, b"guardian@example", "contacts")
    with pytest.raises(CryptoError, match="sealed as section 'contacts', not 'content'"):
        _open(contacts, keys, section="content")
    with pytest.raises(CryptoError, match="sealed as section 'content', not 'contacts'"):
        _open(content, keys, section="contacts")
    relabelled = {**contacts, "section": "content"}  # the clear label changed to pass the check
    with pytest.raises(CryptoError, match="failed authentication"):
        _open(relabelled, keys, section="content")


def test_the_same_section_of_another_referral_is_refused(keys) -> None:
    theirs = _seal(keys, b"their narrative", "content", rid=OTHER_RID, ref=OTHER_REF)
    with pytest.raises(CryptoError, match=f"sealed for referral '{OTHER_REF}', not '{REF}'"):
        _open(theirs, keys, section="content")
    with pytest.raises(CryptoError, match="failed authentication"):  # relabelled: the id and reference are bound
        _open({**theirs, "reference": REF}, keys, section="content")


def test_a_version_2_envelope_cannot_be_passed_off_as_version_1(keys) -> None:
    env = _seal(keys, b"narrative", "content")
    downgraded = {k: v for k, v in env.items() if k not in ("reference", "section")} | {"v": 1}
    with pytest.raises(CryptoError, match="failed authentication"):
        _open(downgraded, keys, section="content")
    with pytest.raises(CryptoError, match="unsupported"):
        _open({**env, "v": 3}, keys, section="content")


def test_labels_that_would_make_the_associated_data_ambiguous_are_refused(keys) -> None:
    with pytest.raises(CryptoError, match="no '|'"):
        crypto.seal(b"x", referral_id=RID, recipients=_pub(keys), reference="PRV|x", section="content")
    with pytest.raises(CryptoError, match="section"):
        crypto.seal(b"x", referral_id=RID, recipients=_pub(keys), reference=REF, section="a|b")


def test_version_1_envelopes_still_open_and_rewrap_upgrades_them_to_version_2(keys) -> None:
    old = seal_v1(b"narrative", RID, _pub(keys))
    assert _open(old, keys, section="content") == b"narrative"  # compatibility: v1 names no section
    new_key = crypto.generate_sealing_key()
    upgraded = crypto.rewrap(old, key_id="la-1", private_key=keys["la-1"], add={"la-2": new_key.public_key},
                             remove=["la-1"], referral_id=RID, reference=REF, section="content")
    assert (upgraded["v"], upgraded["reference"], upgraded["section"]) == (2, REF, "content")
    assert upgraded["ciphertext"] != old["ciphertext"] and upgraded["nonce"] != old["nonce"]
    assert crypto.envelope_key_ids(upgraded) == ["force-1", "la-2"]
    assert crypto.open_sealed(upgraded, referral_id=RID, key_id="la-2", private_key=new_key, reference=REF,
                              section="content") == b"narrative"
    # the other team's entry is untouched and still opens the upgraded envelope
    assert crypto.open_sealed(upgraded, referral_id=RID, key_id="force-1", private_key=keys["force-1"],
                              reference=REF, section="content") == b"narrative"
    with pytest.raises(CryptoError, match="not 'contacts'"):
        crypto.open_sealed(upgraded, referral_id=RID, key_id="la-2", private_key=new_key, section="contacts")
    # without the labels, rewrap only re-seals the data key (as before)
    kept = crypto.rewrap(old, key_id="la-1", private_key=keys["la-1"], add={"la-2": new_key.public_key})
    assert kept["v"] == 1 and kept["ciphertext"] == old["ciphertext"]


def test_rewrap_keeps_a_version_2_ciphertext_and_refuses_a_moved_envelope(keys) -> None:
    env = _seal(keys, b"narrative", "content")
    new_key = crypto.generate_sealing_key()
    out = crypto.rewrap(env, key_id="la-1", private_key=keys["la-1"], add={"la-2": new_key.public_key},
                        remove=["la-1"], referral_id=RID, reference=REF, section="content")
    assert (out["ciphertext"], out["nonce"], out["section"]) == (env["ciphertext"], env["nonce"], "content")
    with pytest.raises(CryptoError, match="not 'contacts'"):
        crypto.rewrap(env, key_id="la-1", private_key=keys["la-1"], add={}, referral_id=RID, reference=REF,
                      section="contacts")


def test_a_tampered_version_1_envelope_is_not_laundered_by_the_upgrade(keys) -> None:
    old = seal_v1(b"narrative", RID, _pub(keys))
    with pytest.raises(CryptoError, match="failed authentication"):  # sealed for another referral id
        crypto.rewrap(old, key_id="la-1", private_key=keys["la-1"], add={}, referral_id=OTHER_RID,
                      reference=OTHER_REF, section="content")
