// The referral page's sealed details (/referrals/{reference}), opened in this browser only
// (DESIGN §3.7, §5). The team key is imported from its file into this browser's storage by
// /assets/app/sealed.js (the form: ./keyform.js) and never sent anywhere; this script fetches
// the sealed envelopes (GET /referrals/{reference}/sealed.json, audited) only when a key is kept
// here, opens them and renders the content as text (never as HTML). The server never sees the
// key or the plaintext.
import * as sealed from "/assets/app/sealed.js";
import * as form from "/static/keyform.js";

const $ = (id) => document.getElementById(id);
const section = $("referral-details");

function clear() {
  $("details-content").replaceChildren();
  $("details-contacts").replaceChildren();
  form.show("details-contacts-section", false);
  $("holding-reason").textContent = "Sealed: shown with the referral details when your browser opens them.";
}

async function open() {
  if (!(await form.ready())) {
    clear();
    return;
  }
  form.status("Opening the referral details in your browser…");
  try {
    const reply = await form.fetchSealed(section.dataset.sealedUrl);
    // never show one referral's details under another, nor one section as another
    const { content, contacts } = await sealed.openReferral(reply, section.dataset.reference);
    const { holding_reason: reason, ...rest } = content || {};
    $("holding-reason").textContent = reason || "Not given";
    sealed.renderContent($("details-content"), rest);
    if (contacts) {
      sealed.renderContent($("details-contacts"), contacts);
      form.show("details-contacts-section");
    }
    form.status("Opened in this browser with your team's key.");
  } catch (err) {
    clear();
    form.failed(err, "The referral details");
  }
}

form.wire({ team: "team", open, clear });
open().finally(() => { section.dataset.ready = "1"; });
