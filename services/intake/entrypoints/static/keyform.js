// The team key form of intake's pages that open sealed content in this browser (the referral
// page, the welfare check: templates/_key_form.html): import a key file, unlock a protected key
// with its passphrase, forget the key. /assets/app/sealed.js keeps the key in this browser's
// IndexedDB; it is never sent anywhere. Text only (textContent), never HTML.
import * as sealed from "/assets/app/sealed.js";

const $ = (id) => document.getElementById(id);
export const show = (id, on = true) => { $(id).hidden = !on; };
let team = "team";

export function status(text) {
  $("details-status").textContent = text;
}

export function error(text) {
  $("details-error").textContent = text ? `Error: ${text}` : "";
  show("details-error", Boolean(text));
}

/** Before opening: show the keys kept here; false (the import form shown) when there is none. */
export async function ready() {
  error("");
  const keys = await sealed.storedKeys();
  const ids = keys.map((k) => k.id).join(", ");
  $("details-key").textContent = keys.length ? `${team.charAt(0).toUpperCase()}${team.slice(1)} key kept in this browser: ${ids}.` : "";
  show("details-key", keys.length > 0);
  show("forget-key", keys.length > 0);
  show("details-unlock", false);
  show("details-import", keys.length === 0);
  if (keys.length === 0) status(`No ${team} key is kept in this browser yet.`);
  return keys.length > 0;
}

/** After a failure to open: say why, and offer the form that helps. */
export function failed(err, what) {
  const code = err && err.code;
  status(`${what} are not open.`);
  error(err && err.message ? err.message : `${what} could not be opened`);
  if (code === "locked") show("details-unlock");
  if (code === "no-key" || code === "not-recipient") show("details-import");
}

/** GET the sealed envelopes at `url` (same origin, never cached); `refused`: what a 403 means. */
export async function fetchSealed(url, refused = "") {
  const reply = await fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
  if (reply.status === 410) throw new sealed.SealedError("destroyed", "The referral details have been destroyed under the retention policy");
  if (reply.status === 403 && refused) throw new sealed.SealedError("refused", refused);
  if (!reply.ok || !(reply.headers.get("Content-Type") || "").startsWith("application/json")) {
    throw new sealed.SealedError("failed", "The sealed details could not be fetched. Reload the page (you may need to sign in again)");
  }
  return reply.json();
}

async function guarded(action) {
  try {
    await action();
  } catch (err) {
    error(err && err.message ? err.message : "Something went wrong");
  }
}

/** Wire the form's buttons: `open()` runs again after each change of key, `clear()` first on forgetting. */
export function wire(options) {
  team = options.team || "team";
  $("import-key").addEventListener("click", () => guarded(async () => {
    const file = $("key-file").files[0];
    if (!file) {
      error(`Choose your ${team}'s key file`);
      return;
    }
    await sealed.importKeyFile(file, $("key-passphrase").value);
    $("key-file").value = "";
    $("key-passphrase").value = "";
    await options.open();
  }));
  $("unlock-key").addEventListener("click", () => guarded(async () => {
    for (const key of (await sealed.storedKeys()).filter((k) => k.protected)) {
      await sealed.unlock(key.id, $("unlock-passphrase").value);
    }
    $("unlock-passphrase").value = "";
    await options.open();
  }));
  $("forget-key").addEventListener("click", () => guarded(async () => {
    for (const key of await sealed.storedKeys()) await sealed.forgetKey(key.id);
    options.clear();
    await options.open();
    status(`The ${team} key has been removed from this browser.`);
  }));
}
