// Control-room console: live list of open alerts over Server-Sent Events.
// Renders with textContent only (never innerHTML); acknowledges with a same-origin POST.
(function () {
  "use strict";
  var table = document.getElementById("alerts");
  if (!table) { return; }
  var force = table.getAttribute("data-force");
  var rows = document.getElementById("alert-rows");
  var banner = document.getElementById("urgent-banner");
  var serverOffset = Date.parse(table.getAttribute("data-now")) - Date.now();
  var seenUrgent = {};
  Array.prototype.forEach.call(rows.querySelectorAll("tr[data-kind='immediate_safety']"), function (tr) {
    seenUrgent[tr.getAttribute("data-alert-id")] = true;
  });

  function age(raisedAt) {
    var minutes = Math.max(0, Math.floor((Date.now() + serverOffset - Date.parse(raisedAt)) / 60000));
    return (minutes >= 60 ? Math.floor(minutes / 60) + " h " + (minutes % 60) + " min" : minutes + " min") + " ago";
  }

  function cell(tr, text) { var td = document.createElement("td"); td.textContent = text; tr.appendChild(td); return td; }

  function row(a) {
    var tr = document.createElement("tr");
    tr.className = "alert-row" + (a.kind === "immediate_safety" ? " alert-immediate" : "");
    tr.setAttribute("data-alert-id", a.alert_id);
    tr.setAttribute("data-kind", a.kind);
    var kind = cell(tr, "");
    var tag = document.createElement("strong");
    tag.className = "tag" + (a.kind === "immediate_safety" ? " tag-red" : "");
    tag.textContent = a.kind_label;
    kind.appendChild(tag);
    cell(tr, a.reference); cell(tr, a.la_code); cell(tr, a.level);
    var when = cell(tr, ""), span = document.createElement("span");
    span.className = "age"; span.setAttribute("data-raised-at", a.raised_at); span.textContent = age(a.raised_at);
    when.appendChild(span);
    var action = cell(tr, ""), form = document.createElement("form");
    form.method = "post"; form.className = "ack-form";
    form.action = "/console/alerts/" + encodeURIComponent(a.alert_id) + "/acknowledgement";
    var button = document.createElement("button"), hidden = document.createElement("span");
    button.type = "submit"; button.className = "button button-secondary"; button.textContent = "Acknowledge";
    hidden.className = "visually-hidden"; hidden.textContent = " alert for " + a.reference;
    button.appendChild(hidden); form.appendChild(button); action.appendChild(form);
    return tr;
  }

  function beep() {
    try {
      var Ctx = window.AudioContext || window.webkitAudioContext, ctx = new Ctx(), osc = ctx.createOscillator();
      osc.frequency.value = 880; osc.connect(ctx.destination); osc.start(); osc.stop(ctx.currentTime + 0.6);
    } catch (e) { /* sound is a bonus; the banner is the cue */ }
  }

  function render(view) {
    serverOffset = Date.parse(view.now) - Date.now();
    while (rows.firstChild) { rows.removeChild(rows.firstChild); }
    var urgent = false, fresh = false;
    view.alerts.forEach(function (a) {
      rows.appendChild(row(a));
      if (a.kind === "immediate_safety") {
        urgent = true;
        if (!seenUrgent[a.alert_id]) { fresh = true; seenUrgent[a.alert_id] = true; }
      }
    });
    banner.hidden = !urgent;
    document.getElementById("count").textContent = String(view.alerts.length);
    document.getElementById("empty").hidden = view.alerts.length > 0;
    document.title = (urgent ? "(!) " : "") + "Open alerts – Safeguard Relay";
    if (fresh) { banner.classList.add("flash"); beep(); }
  }

  rows.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("ack-form")) { return; }
    event.preventDefault();
    fetch(form.action, { method: "POST", credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (resp) { if (resp.ok) { var tr = form.closest("tr"); if (tr) { tr.remove(); } } });
  });

  setInterval(function () {
    Array.prototype.forEach.call(document.querySelectorAll(".age"), function (span) {
      span.textContent = age(span.getAttribute("data-raised-at"));
    });
  }, 15000);

  var source = new EventSource("/console/events?force=" + encodeURIComponent(force));
  source.addEventListener("alerts", function (event) { render(JSON.parse(event.data)); });
}());
