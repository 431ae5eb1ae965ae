// Live pages: the server pushes "what changed" over an event stream (/live/stream/), and the page
// re-fetches the fragments that show it with htmx, through the ordinary views and their
// permissions. Fragments listen for these events on <body>:
//   live:incident        any incident changed (dashboard, list, health page)
//   live:incident-<id>   that incident changed (its page)
//   live:health          a health target changed state (health page)
//   live:poll            the stream is down: re-fetch every TMT_LIVE_POLL_SECONDS instead
// A new major (Sev1/Sev2) incident raises a desktop notification and a sound; the tab title and
// the favicon carry the count of unacknowledged incidents.
(function () {
  "use strict";
  const body = document.body;
  const config = body.dataset;
  if (!config.liveStream) return; // signed-out pages

  const POLL_MS = Math.max(1, Number(config.livePoll) || 10) * 1000;
  const COALESCE_MS = 120; // one re-fetch for a burst of changes (an incident opening writes several)
  const RECONNECT_MS = 15000; // how often a closed stream is tried again while polling
  const SEEN_KEY = "tmt.live.seenMajor";
  const SOUND_KEY = "tmt.live.sound";
  const ASKED_KEY = "tmt.live.notifyAsked";

  const statusEl = document.getElementById("live-status");
  const notifyBtn = document.getElementById("live-notify");
  const soundBtn = document.getElementById("live-sound");
  const baseTitle = document.title.replace(/^\(\d+\+?\) /, "");
  const iconLink = document.querySelector('link[rel="icon"]');
  const baseIconHref = iconLink ? iconLink.href : "";

  let source = null;
  let pollTimer = null;
  let reconnectTimer = null;
  let everOpened = false;
  let flushTimer = null;
  const pending = new Set();

  // -- what changed -> which fragments re-fetch --------------------------------------------------

  function queue(name) {
    pending.add(name);
    if (!flushTimer) flushTimer = setTimeout(flush, COALESCE_MS);
  }

  function flush() {
    flushTimer = null;
    const names = Array.from(pending);
    pending.clear();
    names.forEach((name) => htmx.trigger(body, name));
    if (names.some((name) => name.startsWith("live:incident") || name === "live:poll")) refreshSummary();
  }

  // The list keeps its filters and page in the address bar (hx-push-url): re-fetch that.
  body.addEventListener("htmx:configRequest", (event) => {
    const elt = event.detail.elt;
    if (elt && elt.dataset && elt.dataset.liveUrl === "current") {
      event.detail.path = window.location.pathname + window.location.search;
    }
  });

  // A refresh never takes away what someone is in the middle of: a region holding the focused
  // field, a typed but unsent value or an opened "Cancel…" keeps its old content until the next change.
  function busy(region) {
    if (!region || !region.querySelector) return false;
    const active = document.activeElement;
    if (active && active !== body && region.contains(active) && active.matches("input, textarea, select")) return true;
    if (region.querySelector("details[open]")) return true;
    return Array.from(region.querySelectorAll("input:not([type=hidden]), textarea")).some((field) =>
      field.type === "checkbox" || field.type === "radio" ? field.checked !== field.defaultChecked : field.value !== field.defaultValue,
    );
  }

  function fromLiveEvent(detail) {
    const trigger = detail.requestConfig && detail.requestConfig.triggeringEvent;
    return Boolean(trigger && trigger.type && trigger.type.startsWith("live:"));
  }

  let liveSwap = false; // a swap under way was asked for by a live event (its out-of-band parts too)
  function signedOut(url) {
    return Boolean(config.liveLogin && url && new URL(url, window.location.href).pathname === config.liveLogin);
  }

  body.addEventListener("htmx:beforeSwap", (event) => {
    liveSwap = fromLiveEvent(event.detail);
    if (!liveSwap) return;
    // The session ended: show the login page rather than swap it into a fragment.
    if (signedOut(event.detail.xhr && event.detail.xhr.responseURL)) {
      event.detail.shouldSwap = false;
      window.location.reload();
    } else if (busy(event.detail.target)) {
      event.detail.shouldSwap = false;
    }
  });
  body.addEventListener("htmx:oobBeforeSwap", (event) => {
    if (liveSwap && busy(event.detail.target)) event.detail.shouldSwap = false;
  });
  body.addEventListener("htmx:afterRequest", () => {
    liveSwap = false;
  });

  function setStatus(state, text) {
    if (!statusEl) return;
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  // -- the stream, and polling while it is down --------------------------------------------------

  function startPolling() {
    if (pollTimer) return;
    setStatus("polling", `Updates every ${POLL_MS / 1000} s`);
    pollTimer = setInterval(() => queue("live:poll"), POLL_MS);
  }

  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
  }

  function scheduleReconnect() {
    if (reconnectTimer) return;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      connect();
    }, RECONNECT_MS);
  }

  function connect() {
    if (!("EventSource" in window)) {
      startPolling();
      return;
    }
    source = new EventSource(config.liveStream);
    source.addEventListener("ready", () => {
      stopPolling();
      setStatus("live", "Live");
      // After a gap (a reconnect), catch up on whatever changed meanwhile.
      if (everOpened) {
        queue("live:poll");
      }
      everOpened = true;
    });
    source.addEventListener("incident", (event) => {
      const data = JSON.parse(event.data);
      queue("live:incident");
      if (data.incident !== null) queue(`live:incident-${data.incident}`);
    });
    source.addEventListener("health", () => queue("live:health"));
    source.addEventListener("resync", () => queue("live:poll"));
    // The server cannot stream here (a synchronous worker): poll, and look again later.
    source.addEventListener("unavailable", () => {
      source.close();
      startPolling();
      scheduleReconnect();
    });
    source.addEventListener("error", () => {
      // EventSource retries by itself while CONNECTING; the page polls meanwhile.
      startPolling();
      if (source.readyState === EventSource.CLOSED) scheduleReconnect();
    });
  }

  // -- tab title, favicon, notifications, sound --------------------------------------------------

  function readSeen() {
    try {
      const value = JSON.parse(localStorage.getItem(SEEN_KEY));
      return Array.isArray(value) ? new Set(value) : null;
    } catch (_error) {
      return null;
    }
  }

  function soundOn() {
    return localStorage.getItem(SOUND_KEY) !== "off";
  }

  function drawFavicon(count) {
    if (!iconLink) return;
    if (!count) {
      iconLink.href = baseIconHref;
      return;
    }
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 64;
    const ctx = canvas.getContext("2d");
    const finish = () => {
      ctx.fillStyle = "#c62828";
      ctx.beginPath();
      ctx.arc(40, 40, 24, 0, 2 * Math.PI);
      ctx.fill();
      ctx.fillStyle = "#ffffff";
      ctx.font = "bold 30px sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(count > 9 ? "9+" : String(count), 40, 42);
      iconLink.href = canvas.toDataURL("image/png");
      iconLink.dataset.count = String(count);
    };
    const image = new Image();
    image.onload = () => {
      ctx.drawImage(image, 0, 0, 64, 64);
      finish();
    };
    image.onerror = finish;
    image.src = baseIconHref;
  }

  function alertNew(incidents) {
    if (!incidents.length) return;
    if ("Notification" in window && Notification.permission === "granted") {
      incidents.forEach((incident) => {
        const note = new Notification(`Sev${incident.severity} ${incident.reference}`, {
          body: incident.title,
          tag: incident.reference,
        });
        note.onclick = () => {
          window.focus();
          window.location.href = incident.url;
        };
      });
    }
    if (soundOn() && config.liveSound) {
      new Audio(config.liveSound).play().catch(() => {}); // refused until the page was clicked once
    }
  }

  let unacknowledged = 0;

  function showCount() {
    const title = unacknowledged ? `(${unacknowledged}) ${baseTitle}` : baseTitle;
    if (document.title !== title) document.title = title;
  }

  // A swapped-in page carries its own <title>; the count stays on it.
  body.addEventListener("htmx:afterSettle", showCount);

  let summaryInFlight = false;
  let summaryAgain = false;

  function refreshSummary() {
    if (summaryInFlight) {
      summaryAgain = true;
      return;
    }
    summaryInFlight = true;
    fetch(config.liveSummary, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((answer) => (answer.ok && !signedOut(answer.url) ? answer.json() : null))
      .then((summary) => {
        if (!summary) return;
        const count = summary.unacknowledged;
        unacknowledged = count;
        showCount();
        drawFavicon(count);
        const seen = readSeen();
        const ids = summary.major.map((incident) => incident.id);
        // The first summary this browser ever reads only learns what is already open.
        if (seen) alertNew(summary.major.filter((incident) => !seen.has(incident.id)));
        const kept = seen ? Array.from(seen).slice(-200) : [];
        localStorage.setItem(SEEN_KEY, JSON.stringify(Array.from(new Set([...kept, ...ids]))));
      })
      .catch(() => {})
      .finally(() => {
        summaryInFlight = false;
        if (summaryAgain) {
          summaryAgain = false;
          refreshSummary();
        }
      });
  }

  function showSound() {
    if (!soundBtn) return;
    const on = soundOn();
    soundBtn.setAttribute("aria-pressed", on ? "true" : "false");
    soundBtn.textContent = on ? "Sound on" : "Sound off";
  }

  if (soundBtn) {
    showSound();
    soundBtn.addEventListener("click", () => {
      localStorage.setItem(SOUND_KEY, soundOn() ? "off" : "on");
      showSound();
    });
  }

  // Permission is asked once, and only from a click: browsers ignore (or penalise) asking on load.
  if (notifyBtn && "Notification" in window && Notification.permission === "default" && !localStorage.getItem(ASKED_KEY)) {
    notifyBtn.hidden = false;
    notifyBtn.addEventListener("click", () => {
      localStorage.setItem(ASKED_KEY, "1");
      notifyBtn.hidden = true;
      Notification.requestPermission();
    });
  }

  connect();
  refreshSummary();
})();
