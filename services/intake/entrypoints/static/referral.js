// The referral page's sealed details (/referrals/{reference}), opened in this browser only
// (DESIGN §3.7, §5). The team key is imported from its file into this browser's storage by
// /assets/app/sealed.js and never sent anywhere; this script fetches the sealed envelopes
// (GET /referrals/{reference}/sealed.json, audited) only when a key is kept here, opens them and
// renders the content as text (never as HTML). The server never sees the key or the plaintext.
import * as sealed from "/assets/app/sealed.js";

const $ = (id) => document.getElementById(id);
const section = $("referral-details");
const show = (id, on = true) => { $(id).hidden = !on; };

function status(text) {
  $("details-status").textContent = text;
}

function error(text) {
  $("details-error").textContent = text ? `Error: ${text}` : "";
  show("details-error", Boolean(text));
}

async function keysHere() {
  return sealed.storedKeys();
}

async function showKeys(keys) {
  const ids = keys.map((k) => k.id).join(", ");
  $("details-key").textContent = keys.length ? `Team key kept in this browser: ${ids}.` : "";
  show("details-key", keys.length > 0);
  show("forget-key", keys.length > 0);
}

function clear() {
  $("details-content").replaceChildren();
  $("details-contacts").replaceChildren();
  show("details-contacts-section", false);
  $("holding-reason").textContent = "Sealed: shown with the referral details when your browser opens them.";
}

async function fetchSealed() {
  const reply = await fetch(section.dataset.sealedUrl, { credentials: "same-origin", cache: "no-store",
    headers: { Accept: "application/json" } });
  if (reply.status === 410) throw new sealed.SealedError("destroyed", "The referral details have been destroyed under the retention policy");
  if (!reply.ok || !(reply.headers.get("Content-Type") || "").startsWith("application/json")) {
    throw new sealed.SealedError("failed", "The sealed details could not be fetched. Reload the page (you may need to sign in again)");
  }
  return reply.json();
}

async function open() {
  error("");
  const keys = await keysHere();
  await showKeys(keys);
  show("details-unlock", false);
  if (keys.length === 0) {
    clear();
    status("No team key is kept in this browser yet.");
    show("details-import");
    return;
  }
  show("details-import", false);
  status("Opening the referral details in your browser…");
  try {
    const { content, contacts } = await sealed.openReferral(await fetchSealed());
    const { holding_reason: reason, ...rest } = content || {};
    $("holding-reason").textContent = reason || "Not given";
    sealed.renderContent($("details-content"), rest);
    if (contacts) {
      sealed.renderContent($("details-contacts"), contacts);
      show("details-contacts-section");
    }
    status("Opened in this browser with your team's key.");
  } catch (err) {
    clear();
    const code = err && err.code;
    status("The referral details are not open.");
    error(err && err.message ? err.message : "The referral details could not be opened");
    if (code === "locked") show("details-unlock");
    if (code === "no-key" || code === "not-recipient") show("details-import");
  }
}

async function guarded(action) {
  try {
    await action();
  } catch (err) {
    error(err && err.message ? err.message : "Something went wrong");
  }
}

$("import-key").addEventListener("click", () => guarded(async () => {
  const file = $("key-file").files[0];
  if (!file) {
    error("Choose your team's key file");
    return;
  }
  await sealed.importKeyFile(file, $("key-passphrase").value);
  $("key-file").value = "";
  $("key-passphrase").value = "";
  await open();
}));

$("unlock-key").addEventListener("click", () => guarded(async () => {
  const keys = (await keysHere()).filter((k) => k.protected);
  for (const key of keys) {
    await sealed.unlock(key.id, $("unlock-passphrase").value);
  }
  $("unlock-passphrase").value = "";
  await open();
}));

$("forget-key").addEventListener("click", () => guarded(async () => {
  for (const key of await keysHere()) await sealed.forgetKey(key.id);
  clear();
  await open();
  status("The team key has been removed from this browser.");
}));

open().finally(() => { section.dataset.ready = "1"; });
