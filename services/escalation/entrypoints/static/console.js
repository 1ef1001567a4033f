// The control-room console's live list: alerts over Server-Sent Events (/console/events, the
// session cookie), rendered with DOM APIs and textContent only (never innerHTML). The markup
// is templates/_alert.html's. A new immediate-safety alert shows the red banner and beeps.
const list = document.getElementById("alerts");
const banner = document.getElementById("urgent-banner");
let serverOffset = list ? Date.parse(list.dataset.now) - Date.now() : 0;
const seenUrgent = new Set();

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) { node.className = className; }
  for (const child of children) { node.append(child); }
  return node;
}

function age(raisedAt) {
  const minutes = Math.max(0, Math.floor((Date.now() + serverOffset - Date.parse(raisedAt)) / 60000));
  return (minutes >= 60 ? `${Math.floor(minutes / 60)} h ${minutes % 60} min` : `${minutes} min`) + " ago";
}

function action(href, text, hidden) {
  const link = el("a", "govuk-link", text, el("span", "govuk-visually-hidden", hidden));
  link.href = href;
  return el("li", "govuk-summary-card__action", link);
}

function row(key, ...value) {
  return el("div", "govuk-summary-list__row", el("dt", "govuk-summary-list__key", key),
            el("dd", "govuk-summary-list__value", ...value));
}

function card(a) {
  const base = `/console/alerts/${encodeURIComponent(a.alert_id)}`;
  const tagClass = a.urgent ? " govuk-tag--red" : a.kind === "deadline_breach" ? " govuk-tag--orange" : " govuk-tag--blue";
  const actions = el("ul", "govuk-summary-card__actions");
  if (!a.acknowledged) { actions.append(action(`${base}/acknowledge`, "Acknowledge", ` alert for ${a.reference}`)); }
  actions.append(action(`${base}/outcome`, "Record outcome", ` for ${a.reference}`),
                 action(`${base}/welfare-check`, "Open for a welfare check", ` (${a.reference})`));
  const title = el("h2", "govuk-summary-card__title", el("strong", "govuk-tag" + tagClass, a.kind_label), " ",
                   el("span", "sg-alert__reference", a.reference));
  const ageSpan = el("span", "sg-age", a.raised_age);
  ageSpan.dataset.raisedAt = a.raised_at;
  const status = a.acknowledged
    ? `Acknowledged by ${a.acknowledged_by} at ${a.acknowledged_at}. Outcome not recorded yet.` : "Not acknowledged";
  const details = el("dl", "govuk-summary-list", row("Council", a.council), row("Level", a.level),
                     row("Raised", `${a.raised}, `, ageSpan), row("Status", status));
  details.lastChild.lastChild.classList.add("sg-status");
  const node = el("div", "govuk-summary-card sg-alert" + (a.urgent ? " sg-alert--urgent" : ""),
                  el("div", "govuk-summary-card__title-wrapper", title, actions),
                  el("div", "govuk-summary-card__content", details));
  node.dataset.alertId = a.alert_id;
  node.dataset.kind = a.kind;
  return node;
}

function beep() {
  try {
    const ctx = new AudioContext(), osc = ctx.createOscillator();
    osc.frequency.value = 880; osc.connect(ctx.destination); osc.start(); osc.stop(ctx.currentTime + 0.6);
  } catch { /* sound is a bonus; the banner is the cue */ }
}

function render(view) {
  serverOffset = Date.parse(view.now) - Date.now();
  list.replaceChildren(...view.alerts.map(card));
  const urgent = view.alerts.filter((a) => a.urgent && !a.acknowledged);
  const fresh = urgent.filter((a) => !seenUrgent.has(a.alert_id));
  urgent.forEach((a) => seenUrgent.add(a.alert_id));
  banner.hidden = urgent.length === 0;
  document.getElementById("count").textContent = String(view.alerts.length);
  document.getElementById("empty").hidden = view.alerts.length > 0;
  document.title = (urgent.length ? "(!) " : "") + document.title.replace(/^\(!\) /, "");
  if (fresh.length) { beep(); }
}

if (list) {
  list.querySelectorAll(".sg-alert[data-kind='immediate_safety']").forEach((n) => seenUrgent.add(n.dataset.alertId));
  setInterval(() => {
    document.querySelectorAll(".sg-age").forEach((span) => { span.textContent = age(span.dataset.raisedAt); });
  }, 15000);
  const source = new EventSource("/console/events");
  source.addEventListener("alerts", (event) => render(JSON.parse(event.data)));
  source.addEventListener("end", () => {  // the session's idle or absolute limit: a reload signs in again
    source.close();
    document.getElementById("live-ended").hidden = false;
  });
}
