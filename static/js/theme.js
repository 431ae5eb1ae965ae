// Light or dark: the system decides (Pico follows prefers-color-scheme while <html> has no
// data-theme) until the person picks one with the header's toggle; the pick is remembered here.
// Loaded in <head> without defer so a remembered theme applies before the first paint.
(function () {
  var KEY = "tmt-theme";
  var root = document.documentElement;
  var system = window.matchMedia("(prefers-color-scheme: dark)");

  function stored() {
    try { return localStorage.getItem(KEY); } catch (e) { return null; }
  }
  function apply(theme) {
    if (theme === "light" || theme === "dark") root.setAttribute("data-theme", theme);
    else root.removeAttribute("data-theme");
  }
  function current() {
    return root.getAttribute("data-theme") || (system.matches ? "dark" : "light");
  }

  apply(stored());

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-theme-toggle]").forEach(function (button) {
      function label() {
        var next = current() === "dark" ? "light" : "dark";
        button.setAttribute("aria-label", "Switch to " + next);
        button.dataset.current = current();
      }
      label();
      button.addEventListener("click", function () {
        var next = current() === "dark" ? "light" : "dark";
        // Choosing what the system already asks for means "follow the system" again.
        var systemTheme = system.matches ? "dark" : "light";
        try {
          if (next === systemTheme) localStorage.removeItem(KEY);
          else localStorage.setItem(KEY, next);
        } catch (e) { /* private mode: the choice lasts for this page only */ }
        apply(next === systemTheme ? null : next);
        label();
      });
      system.addEventListener("change", label);
    });
  });
})();
