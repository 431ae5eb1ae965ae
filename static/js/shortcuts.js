// Keyboard shortcuts (a acknowledge, n note, s status update, / search, ? help), and the folded
// sections of a phone-width incident page opening when something inside them is wanted.
(function () {
  function openFoldsAround(el) {
    for (var d = el && el.closest("details"); d; d = d.parentElement && d.parentElement.closest("details")) {
      d.open = true;
    }
  }

  function typing(target) {
    if (!target || !target.closest) return false;
    return Boolean(target.isContentEditable || target.closest("input, textarea, select, [contenteditable]"));
  }

  var actions = {
    a: function () {
      var button = document.querySelector('[data-shortcut="a"]:not([disabled])');
      if (button) { button.click(); return true; }
      return false;
    },
    n: function () {
      var field = document.querySelector('[data-shortcut="n"]');
      if (!field) return false;
      openFoldsAround(field);
      field.scrollIntoView({ block: "center" });
      field.focus();
      return true;
    },
    s: function () {
      var link = document.querySelector('[data-shortcut="s"]');
      if (link) { link.click(); return true; }
      return false;
    },
    "/": function () {
      var search = document.querySelector('[data-testid="quick-search"]');
      if (!search) return false;
      openFoldsAround(search);
      search.focus();
      search.select();
      return true;
    },
    "?": function () {
      var help = document.getElementById("shortcuts-help");
      if (!help) return false;
      if (!help.open) help.showModal();
      return true;
    },
  };

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    if (typing(event.target)) return;
    var help = document.getElementById("shortcuts-help");
    if (help && help.open && event.key !== "?") return;  // the dialog has the keyboard
    var action = actions[event.key];
    if (action && action()) event.preventDefault();
  });

  // A link or redirect to #timeline, #checklist...: open the fold it sits in.
  function openHashTarget() {
    if (!location.hash) return;
    var target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (target) openFoldsAround(target.querySelector("details") || target);
  }
  document.addEventListener("DOMContentLoaded", openHashTarget);
  window.addEventListener("hashchange", openHashTarget);
})();
