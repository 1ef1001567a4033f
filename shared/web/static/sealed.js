// Sealed referral content, opened in the browser (DESIGN §3.7, §5). Served at /assets/app/sealed.js.
//
// A team's X25519 private key is imported from its key file (written by `safeguard keys init`
// or `keys rotate` with shared/crypto.py:write_private_key: one line, standard base64 of the
// 32-byte key, named keys/<key_id>.x25519, or keys/<org>.x25519 for key id "<org>-1"). The key
// stays in this browser: IndexedDB database "safeguard-relay", store "team-keys", optionally
// wrapped under a passphrase (PBKDF2-SHA-256 from WebCrypto + libsodium crypto_secretbox;
// libsodium-wrappers' standard build has no crypto_pwhash). It is never sent anywhere: this
// module makes no network request but the import of libsodium.
//
// Envelopes are opened as shared/crypto.py:open_sealed does: the data key sealed to our key id
// (crypto_box_seal_open), then XChaCha20-Poly1305-IETF with associated data
//   version 2: "safeguard-relay/v2|{referral_id}|{key_version}|{reference}|{section}"
//   version 1 (sealed before; still opened): "{referral_id}|{key_version}"
// A version 2 envelope names its reference and section in clear: the page says which referral
// and which section it expects, and an envelope for another one is refused before it is opened
// (a changed name fails authentication). Base64 is standard with padding.
//
// Content-Security-Policy: libsodium compiles WebAssembly, so a page using this module needs
//   script-src 'self' 'wasm-unsafe-eval'
// (no 'unsafe-eval', no inline script; without 'wasm-unsafe-eval' libsodium falls back to its
// slow asm.js build and the browser reports a violation), and connect-src 'self' for the page's
// own fetch of the envelope. WebCrypto needs a secure context (https, or 127.0.0.1/localhost).
// Rendering uses DOM APIs and textContent only, never innerHTML.
import sodium from "../libsodium/libsodium-wrappers.mjs";

const OPENS = [1, 2]; // envelope versions this module opens
const AAD_V2 = "safeguard-relay/v2";
const LABEL = /^[A-Za-z0-9._:/@+-]{0,200}$/; // shared/crypto.py LABEL: no "|"
const ALG = "XChaCha20-Poly1305";
const KEY_SIZE = 32;
const DB_NAME = "safeguard-relay";
const STORE = "team-keys";
const PBKDF2_ITERATIONS = 600000;
const unlocked = new Map(); // key id -> { publicKey, privateKey } for this page's lifetime

export class SealedError extends Error {
  // code: no-key | bad-key-file | locked | wrong-passphrase | not-recipient | failed |
  //       malformed | unsupported | destroyed | storage | wrong-referral | wrong-section
  constructor(code, message) {
    super(message);
    this.name = "SealedError";
    this.code = code;
  }
}

function b64d(text, what) {
  if (typeof text !== "string" || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new SealedError("malformed", `${what} is not valid base64`);
  }
  return sodium.from_base64(text, sodium.base64_variants.ORIGINAL);
}

const b64e = (bytes) => sodium.to_base64(bytes, sodium.base64_variants.ORIGINAL);

// --- storage (IndexedDB) -------------------------------------------------------------

function request(mode, action) {
  return new Promise((resolve, reject) => {
    const failed = () => reject(new SealedError("storage", "This browser could not store or read the team key"));
    let open;
    try {
      open = indexedDB.open(DB_NAME, 1);
    } catch {
      failed();
      return;
    }
    open.onupgradeneeded = () => open.result.createObjectStore(STORE, { keyPath: "id" });
    open.onerror = failed;
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction(STORE, mode);
      const req = action(tx.objectStore(STORE));
      tx.oncomplete = () => { db.close(); resolve(req.result); };
      tx.onerror = tx.onabort = () => { db.close(); failed(); };
    };
  });
}

const describe = (rec) => ({ id: rec.id, label: rec.label, publicKey: rec.publicKey,
  protected: rec.protected, added: rec.added, unlocked: unlocked.has(rec.id) });

async function kek(passphrase, salt, iterations) {
  const material = new TextEncoder().encode(passphrase.normalize("NFC"));
  const base = await crypto.subtle.importKey("raw", material, "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt, iterations }, base, 256);
  return new Uint8Array(bits);
}

/** Key id from a key file's name: "<key_id>.x25519", or "<org>.x25519" (from `keys init`) for "<org>-1". */
export function keyIdFromFileName(name) {
  const stem = String(name || "").replace(/\.x25519$/i, "").replace(/\s*\(\d+\)$/, "").trim();
  return /-\d+$/.test(stem) ? stem : `${stem}-1`;
}

// --- the API ---------------------------------------------------------------------------

/** Import a team key file (a File/Blob from <input type=file>); kept in IndexedDB, wrapped
 * under `passphrase` when one is given. `options.keyId` overrides the id taken from the name. */
export async function importKeyFile(file, passphrase = "", options = {}) {
  await sodium.ready;
  const name = file && typeof file.name === "string" ? file.name : "";
  const bad = (why) => new SealedError("bad-key-file", `This is not a team key file: ${why}`);
  if (/\.ed25519$/i.test(name)) throw bad("it is a signing key (.ed25519); choose your team's .x25519 file");
  if (!file || file.size > 1024) throw bad("a team key file is one short line of text");
  let raw;
  try {
    raw = b64d((await file.text()).trim(), "key file");
  } catch {
    throw bad("it must hold one line of base64");
  }
  if (raw.length !== KEY_SIZE) throw bad(`it must hold a ${KEY_SIZE}-byte key`);
  const id = options.keyId || keyIdFromFileName(name);
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(id)) throw bad("its name does not give a key id (name it <key id>.x25519)");
  const publicKey = sodium.crypto_scalarmult_base(raw);
  const rec = { id, label: name || id, publicKey: b64e(publicKey), added: new Date().toISOString(),
    protected: Boolean(passphrase) };
  if (passphrase) {
    const salt = crypto.getRandomValues(new Uint8Array(16));
    const nonce = sodium.randombytes_buf(sodium.crypto_secretbox_NONCEBYTES);
    const k = await kek(passphrase, salt, PBKDF2_ITERATIONS);
    rec.wrapped = { kdf: "PBKDF2-SHA-256", iterations: PBKDF2_ITERATIONS, salt, nonce,
      box: sodium.crypto_secretbox_easy(raw, nonce, k) };
    sodium.memzero(k);
  } else {
    rec.key = raw;
  }
  await request("readwrite", (store) => store.put(rec));
  lock(id);
  unlocked.set(id, { publicKey, privateKey: raw });
  return describe(rec);
}

/** The keys kept in this browser: [{ id, label, publicKey, protected, added, unlocked }]. */
export async function storedKeys() {
  const all = await request("readonly", (store) => store.getAll());
  return all.map(describe);
}

/** Unlock a stored key for this page (passphrase for a protected key; none otherwise). */
export async function unlock(id, passphrase = "") {
  await sodium.ready;
  const rec = await request("readonly", (store) => store.get(id));
  if (!rec) throw new SealedError("no-key", `No key ${id} is kept in this browser`);
  let raw = rec.key;
  if (rec.protected) {
    if (!passphrase) throw new SealedError("wrong-passphrase", `Enter the passphrase for the key ${id}`);
    const k = await kek(passphrase, rec.wrapped.salt, rec.wrapped.iterations);
    try {
      raw = sodium.crypto_secretbox_open_easy(rec.wrapped.box, rec.wrapped.nonce, k);
    } catch {
      throw new SealedError("wrong-passphrase", `That passphrase does not unlock the key ${id}`);
    } finally {
      sodium.memzero(k);
    }
  }
  const publicKey = sodium.crypto_scalarmult_base(raw);
  if (b64e(publicKey) !== rec.publicKey) throw new SealedError("storage", `The stored key ${id} is damaged`);
  lock(id);
  unlocked.set(id, { publicKey, privateKey: raw });
  return describe(rec);
}

/** Drop an unlocked key from this page's memory (it stays stored). */
export function lock(id) {
  const held = unlocked.get(id);
  if (held) sodium.memzero(held.privateKey);
  unlocked.delete(id);
}

/** Remove a key from this browser for good ("forget this key"). */
export async function forgetKey(id) {
  lock(id);
  await request("readwrite", (store) => store.delete(id));
}

const SECTION_NAMES = { content: "the referral details", contacts: "the contact details" };
const sectionName = (s) => SECTION_NAMES[s] || `"${s}"`;

/** A version 2 envelope must name the `expected` reference and section (each checked when given). */
function checkLabel(envelope, expected) {
  if (envelope.v === 1) return; // sealed before envelopes named their referral and section
  if (typeof envelope.reference !== "string" || typeof envelope.section !== "string") {
    throw new SealedError("malformed", "The sealed content is malformed");
  }
  if (expected.reference !== undefined && expected.reference !== null && envelope.reference !== expected.reference) {
    throw new SealedError("wrong-referral", `These sealed details belong to referral ${envelope.reference || "(none)"}, `
      + `not ${expected.reference}: they were not opened.`);
  }
  if (expected.section !== undefined && expected.section !== null && envelope.section !== expected.section) {
    throw new SealedError("wrong-section", `This envelope holds ${sectionName(envelope.section)}, not `
      + `${sectionName(expected.section)}: it was moved, and was not opened.`);
  }
}

/** Open one envelope (content_sealed or contacts_sealed) of referral `referralId`; the parsed JSON.
 * `expected`: { reference, section } the page expects; a version 2 envelope naming another is refused. */
export async function openEnvelope(envelope, referralId, expected = {}) {
  await sodium.ready;
  if (!envelope || typeof envelope !== "object" || !Array.isArray(envelope.recipients)) {
    throw new SealedError("malformed", "The sealed content is malformed");
  }
  if (!OPENS.includes(envelope.v) || envelope.alg !== ALG) {
    throw new SealedError("unsupported", "The sealed content uses a format this page cannot open");
  }
  checkLabel(envelope, expected);
  if (envelope.recipients.length === 0) throw new SealedError("destroyed", "This content has been destroyed");
  const locked = [];
  for (const rec of await request("readonly", (store) => store.getAll())) {
    if (unlocked.has(rec.id)) continue;
    if (rec.protected) locked.push(rec.id);
    else unlocked.set(rec.id, { publicKey: sodium.crypto_scalarmult_base(rec.key), privateKey: rec.key });
  }
  // The entry named by our key id first (as open_sealed); then, like `safeguard open`, the others.
  const tries = [];
  for (const [id, key] of unlocked) {
    for (const entry of envelope.recipients) tries.push({ entry, key, rank: entry.key_id === id ? 0 : 1 });
  }
  tries.sort((a, b) => a.rank - b.rank);
  for (const { entry, key } of tries) {
    let dataKey;
    try {
      dataKey = sodium.crypto_box_seal_open(b64d(entry.sealed_key, "sealed key"), key.publicKey, key.privateKey);
    } catch {
      continue;
    }
    return decrypt(envelope, String(referralId), dataKey);
  }
  const named = envelope.recipients.map((r) => r.key_id).join(", ");
  if (locked.length) {
    throw new SealedError("locked", `Unlock your team's key (${locked.join(", ")}) with its passphrase to open this content`);
  }
  if (unlocked.size === 0) {
    throw new SealedError("no-key", "Import your team's key file (.x25519) to open this content");
  }
  throw new SealedError("not-recipient", `The key in this browser (${[...unlocked.keys()].join(", ")}) cannot open `
    + `this content: it is sealed to ${named}. Import your team's current key file.`);
}

/** shared/crypto.py `_aad`: version 1, or version 2 with its labels (none may hold "|"). */
function associatedData(envelope, referralId, keyVersion) {
  if (envelope.v === 1) return `${referralId}|${keyVersion}`;
  const labels = [referralId, envelope.reference, envelope.section];
  if (!labels.every((x) => typeof x === "string" && LABEL.test(x))) {
    throw new SealedError("malformed", "The sealed content is malformed");
  }
  return [AAD_V2, referralId, String(keyVersion), envelope.reference, envelope.section].join("|");
}

function decrypt(envelope, referralId, dataKey) {
  try {
    if (dataKey.length !== KEY_SIZE) throw new SealedError("malformed", "The sealed content is malformed");
    const v = envelope.key_version;
    if (!Number.isInteger(v) && !/^\d+$/.test(String(v))) throw new SealedError("malformed", "The sealed content is malformed");
    const aad = sodium.from_string(associatedData(envelope, referralId, Number(v)));
    let plain;
    try {
      plain = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
        null, b64d(envelope.ciphertext, "ciphertext"), aad, b64d(envelope.nonce, "nonce"), dataKey);
    } catch (err) {
      if (err instanceof SealedError) throw err;
      throw new SealedError("failed", "The sealed content failed authentication (changed, or not this referral's)");
    }
    try {
      return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plain));
    } catch {
      throw new SealedError("malformed", "The opened content is not JSON");
    } finally {
      sodium.memzero(plain);
    }
  } finally {
    sodium.memzero(dataKey);
  }
}

/** The reply must be referral `reference`'s (when given): SealedError "wrong-referral" otherwise. */
export function checkReply(reply, reference) {
  if (!reply || typeof reply !== "object") throw new SealedError("malformed", "The sealed content is malformed");
  if (reference !== undefined && reference !== null && reply.reference !== reference) {
    throw new SealedError("wrong-referral", `The details sent are for referral ${reply.reference || "(none)"}, `
      + `not ${reference}: they were not opened.`);
  }
}

/** Open the reply of GET /v1/referrals/{reference}/sealed: { content, contacts }. `reference`: the
 * referral the page shows; the reply and each envelope must be that referral's, and each envelope
 * the section it is shown as (content, contacts). */
export async function openReferral(reply, reference) {
  checkReply(reply, reference);
  const ref = reference ?? reply.reference;
  const content = await openEnvelope(reply.content_sealed, reply.referral_id, { reference: ref, section: "content" });
  const contacts = reply.contacts_sealed
    ? await openEnvelope(reply.contacts_sealed, reply.referral_id, { reference: ref, section: "contacts" }) : null;
  return { content, contacts };
}

// --- rendering ---------------------------------------------------------------------------

export const LABELS = {
  parents_guardians: "Parents and guardians",
  holding_reason: "Reason for the holding instructions",
  date_of_birth: "Date of birth",
};
const WORDS = { id: "ID", nhs: "NHS", uprn: "UPRN", url: "URL", mash: "MASH", ctp: "CTP", dob: "Date of birth" };

/** A readable label from a field name: "date_of_birth" -> "Date of birth", "nhsNumber" -> "NHS number". */
export function labelFor(name, labels = LABELS) {
  if (Object.hasOwn(labels, name)) return labels[name];
  const words = String(name).replace(/([a-z0-9])([A-Z])/g, "$1 $2").split(/[\s_-]+/).filter(Boolean)
    .map((w) => WORDS[w.toLowerCase()] || w.toLowerCase());
  const text = words.join(" ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.append(...children);
  return node;
}

function scalar(value) {
  if (value === null || value === undefined || value === "") return [document.createTextNode("Not given")];
  if (typeof value === "boolean") return [document.createTextNode(value ? "Yes" : "No")];
  const lines = String(value).split("\n");
  return lines.flatMap((line, i) => (i ? [document.createElement("br"), document.createTextNode(line)]
    : [document.createTextNode(line)]));
}

const isPlain = (v) => v !== null && typeof v === "object";

function build(value, labels, nested) {
  if (Array.isArray(value)) {
    if (value.length === 0) return scalar(null);
    if (!value.some(isPlain)) {
      return [el("ul", "govuk-list govuk-list--bullet", ...value.map((v) => el("li", "", ...scalar(v))))];
    }
    return [el("ul", "govuk-list", ...value.map((v) => el("li", "", ...build(v, labels, true))))];
  }
  if (isPlain(value)) {
    const entries = Object.entries(value);
    if (entries.length === 0) return scalar(null);
    const list = el("dl", nested ? "govuk-summary-list govuk-summary-list--no-border" : "govuk-summary-list");
    for (const [key, v] of entries) {
      list.append(el("div", "govuk-summary-list__row",
        el("dt", "govuk-summary-list__key", labelFor(key, labels)),
        el("dd", "govuk-summary-list__value", ...build(v, labels, true))));
    }
    return [list];
  }
  return nested ? scalar(value) : [el("p", "govuk-body", ...scalar(value))];
}

/** Replace `container`'s children with `value` as GOV.UK summary lists (text only, no HTML). */
export function renderContent(container, value, options = {}) {
  const labels = { ...LABELS, ...(options.labels || {}) };
  container.replaceChildren(...build(value, labels, false));
}
