// Live response-time clocks: every <span class="clock" data-due=ISO> counts down or up.
(function () {
  function fmt(ms) {
    const s = Math.floor(Math.abs(ms) / 1000);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + String(m).padStart(2, "0") + "m";
    return m + "m " + String(sec).padStart(2, "0") + "s";
  }
  function tick() {
    const now = Date.now();
    document.querySelectorAll(".clock[data-due]:not([data-done])").forEach(function (el) {
      // Overdue from the due moment itself, as on the server (incidents.selectors.is_overdue).
      const left = Date.parse(el.dataset.due) - now;
      el.textContent = left > 0 ? "due in " + fmt(left) : "overdue by " + fmt(left);
      el.classList.toggle("clock-overdue", left <= 0);
      el.classList.toggle("clock-running", left > 0);
    });
  }
  tick();
  setInterval(tick, 1000);
  document.addEventListener("htmx:afterSwap", tick);
})();
