// The welfare check, opened (/referrals/{reference}/welfare-check/open; DESIGN §3.7, §5): the
// force's control room sees the child's identity and address, opened in this browser with the
// force's key (imported from its file into this browser by /assets/app/sealed.js; never sent).
// The content is sealed as one envelope, so the whole of it reaches this browser and is opened
// here; this script keeps only the child's names, date of birth and address and renders them as
// text. The narrative, the people around the child and everything else are dropped unrendered.
// The contacts envelope is never fetched (the server does not give it out for a welfare check).
import * as sealed from "/assets/app/sealed.js";
import * as form from "/static/keyform.js";

const $ = (id) => document.getElementById(id);
const section = $("welfare-details");
const ENDED = "This welfare check has ended (it lasts 15 minutes). Reload the page to open it again.";

const text = (value) => (typeof value === "string" || typeof value === "number" ? String(value) : null);

/** The child's identity and address only: every other field of the content is left out. */
function identityOf(content) {
  const subject = content && typeof content.subject === "object" && content.subject ? content.subject : {};
  const address = subject.address && typeof subject.address === "object" ? subject.address : {};
  const lines = Array.isArray(address.lines) ? address.lines.map(text).filter(Boolean) : [];
  const postcode = text(address.postcode);
  return {
    given_names: text(subject.given_names),
    family_name: text(subject.family_name),
    date_of_birth: text(subject.date_of_birth),
    address: [...lines, ...(postcode ? [postcode] : [])].join("\n") || null,
  };
}

function clear() {
  $("welfare-identity").replaceChildren();
}

async function open() {
  if (!(await form.ready())) {
    clear();
    return;
  }
  form.status("Opening the child's details in your browser…");
  try {
    const reply = await form.fetchSealed(section.dataset.sealedUrl, ENDED);
    const reference = section.dataset.reference;
    sealed.checkReply(reply, reference);  // this referral's content section, or nothing
    const content = await sealed.openEnvelope(reply.content_sealed, reply.referral_id, { reference, section: "content" });
    const identity = identityOf(content);
    sealed.renderContent($("welfare-identity"), identity);
    form.status("Opened in this browser with your force's key.");
  } catch (err) {
    clear();
    form.failed(err, "The child's details");
  }
}

form.wire({ team: "force", open, clear });
open().finally(() => { section.dataset.ready = "1"; });
