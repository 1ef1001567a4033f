// Test-only wiring of /assets/app/sealed.js (served by tests/web, not shipped).
import * as sealed from "/assets/app/sealed.js";

const $ = (id) => document.getElementById(id);

document.addEventListener("securitypolicyviolation", (e) => {
  document.body.dataset.cspViolation = `${e.violatedDirective} ${e.blockedURI}`;
});

async function showKeys() {
  const keys = await sealed.storedKeys();
  $("keys").replaceChildren(...keys.map((k) => {
    const li = document.createElement("li");
    li.textContent = `${k.id} ${k.protected ? "protected" : "plain"} ${k.unlocked ? "unlocked" : "locked"}`;
    return li;
  }));
}

async function run(action) {
  $("status").textContent = "";
  $("error").textContent = "";
  $("error").dataset.code = "";
  try {
    $("status").textContent = await action();
  } catch (err) {
    $("error").dataset.code = err.code || "unexpected";
    $("error").textContent = err.message;
  }
  await showKeys();
  document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
}

$("import").addEventListener("click", () => run(async () => {
  const key = await sealed.importKeyFile($("keyfile").files[0], $("passphrase").value);
  return `imported ${key.id}`;
}));
$("unlock").addEventListener("click", () => run(async () => {
  const [key] = await sealed.storedKeys();
  return `unlocked ${(await sealed.unlock(key.id, $("passphrase").value)).id}`;
}));
$("open").addEventListener("click", () => run(async () => {
  $("content").replaceChildren();
  $("contacts").replaceChildren();
  const reply = await (await fetch("/test/sealed")).json();
  // the referral this page shows (?reference=…), as the referral page's data-reference
  const { content, contacts } = await sealed.openReferral(reply, new URLSearchParams(location.search).get("reference"));
  sealed.renderContent($("content"), content);
  sealed.renderContent($("contacts"), contacts);
  return "opened";
}));
$("forget").addEventListener("click", () => run(async () => {
  for (const key of await sealed.storedKeys()) await sealed.forgetKey(key.id);
  return "forgotten";
}));

showKeys().then(() => { document.body.dataset.ready = "1"; });
