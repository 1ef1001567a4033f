// Reloads the ops dashboard every data-refresh seconds; the button pauses it (WCAG 2.2.1).
const root = document.getElementById("dashboard");
const button = document.getElementById("pause");
const status = document.getElementById("refresh-status");
if (root && button && status) {
  const seconds = parseInt(root.getAttribute("data-refresh"), 10) || 15;
  let paused = window.sessionStorage.getItem("ops-paused") === "1";
  let timer = null;
  const show = () => {
    button.textContent = paused ? "Resume auto-refresh" : "Pause auto-refresh";
    status.textContent = paused ? "Auto-refresh is paused." : `Refreshes every ${seconds} seconds.`;
  };
  const arm = () => {
    window.clearTimeout(timer);
    if (!paused) { timer = window.setTimeout(() => window.location.reload(), seconds * 1000); }
  };
  button.hidden = false;
  button.addEventListener("click", () => {
    paused = !paused;
    window.sessionStorage.setItem("ops-paused", paused ? "1" : "0");
    show();
    arm();
  });
  show();
  arm();
}
