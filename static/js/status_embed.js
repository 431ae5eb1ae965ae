/* TMT status banner: <script src="https://<portal>/status/embed.js" async></script> on a page of
   an origin listed in TMT_STATUS_CORS_ORIGINS. Shows a bar at the top of the page while an incident
   is published or maintenance is in progress, linking to the status page; nothing otherwise.
   Text goes in with textContent (never as HTML), and styles through the CSSOM, which a host page's
   Content-Security-Policy allows where it refuses style attributes. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch) return;
  var origin = new URL(script.src, document.baseURI).origin;
  var COLOURS = {
    under_maintenance: "#1565c0", degraded_performance: "#ef6c00",
    partial_outage: "#d84315", major_outage: "#c62828"
  };

  function banner(data) {
    var active = data.incidents || [];
    var works = (data.maintenance || []).filter(function (m) { return m.state === "in_progress"; });
    if (!active.length && !works.length) return;
    var bar = document.createElement("div");
    bar.setAttribute("role", "status");
    bar.setAttribute("data-tmt-status", data.status);
    var s = bar.style;
    s.background = COLOURS[data.status] || "#455a64"; s.color = "#fff"; s.padding = "8px 16px";
    s.font = "14px/1.4 system-ui, sans-serif"; s.textAlign = "center";
    var text = document.createElement("span");
    if (active.length) {
      var latest = active[0];
      text.textContent = latest.title + " — " + latest.status_label +
        (active.length > 1 ? " (and " + (active.length - 1) + " more)" : "") + ". ";
    } else {
      text.textContent = "Maintenance in progress: " + works[0].title + ". ";
    }
    var link = document.createElement("a");
    link.href = origin + "/status/";
    link.textContent = "System status";
    link.style.color = "#fff"; link.style.textDecoration = "underline";
    bar.appendChild(text); bar.appendChild(link);
    document.body.insertBefore(bar, document.body.firstChild);
  }

  fetch(origin + "/status.json", { credentials: "omit" })
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (data) {
      if (!data) return;
      if (document.body) banner(data);
      else document.addEventListener("DOMContentLoaded", function () { banner(data); });
    })
    .catch(function () { /* the host page goes on without the banner */ });
})();
