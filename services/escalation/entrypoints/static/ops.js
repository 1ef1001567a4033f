// Reloads the ops dashboard every data-refresh seconds; the button pauses it (WCAG 2.2.1).
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  var button = document.getElementById("pause");
  var status = document.getElementById("refresh-status");
  if (!root || !button || !status) { return; }
  var seconds = parseInt(root.getAttribute("data-refresh"), 10) || 15;
  var paused = window.sessionStorage.getItem("ops-paused") === "1";
  var timer = null;

  function show() {
    button.textContent = paused ? "Resume auto-refresh" : "Pause auto-refresh";
    status.textContent = paused ? "Auto-refresh is paused." : "Refreshes every " + seconds + " seconds.";
  }

  function arm() {
    window.clearTimeout(timer);
    if (!paused) { timer = window.setTimeout(function () { window.location.reload(); }, seconds * 1000); }
  }

  button.hidden = false;
  button.addEventListener("click", function () {
    paused = !paused;
    window.sessionStorage.setItem("ops-paused", paused ? "1" : "0");
    show();
    arm();
  });
  show();
  arm();
})();
