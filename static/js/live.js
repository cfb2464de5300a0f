// The pages' live updates (htmx ws extension): what the socket is told, what it may swap, and the
// "live" indicator (#live-status).
(() => {
  "use strict";
  if (window.reindexerLive) return;
  window.reindexerLive = true;
  const htmx = window.htmx;

  // htmx settles `style` like `class`: it copies the old element's style attribute onto the new
  // one with setAttribute, which the CSP refuses ("Applying inline style") whenever the browser
  // left a style="" on an element (form inputs, after they were edited). No style of ours is
  // inline, so there is nothing to settle.
  htmx.config.attributesToSettle = htmx.config.attributesToSettle.filter((name) => name !== "style");
  // Reconnect soon after a drop, and never wait more than a few seconds (htmx's default grows
  // to a minute).
  htmx.config.wsReconnectDelay = (retries) =>
    Math.min(500 * 2 ** retries, 4000) * (0.5 + Math.random() / 2);

  // -- the indicator: "live", or "disconnected, retrying" while the socket is down -------------
  const showLive = (state, text) => {
    const status = document.getElementById("live-status");
    if (!status) return;
    status.dataset.live = state;
    status.textContent = text;
  };

  // -- the list page tells its socket which job rows it shows --------------------------------
  let socket = null;
  let lastShown = null;
  const reportShown = () => {
    const panel = document.getElementById("jobs-panel");
    if (!socket || !panel) return;
    const ids = new Set();
    for (const row of panel.querySelectorAll("[data-job-id]")) {
      const id = Number(row.dataset.jobId);
      if (Number.isInteger(id) && id > 0) ids.add(id);
    }
    const shown = JSON.stringify({ shown: Array.from(ids).sort((a, b) => a - b) });
    if (shown === lastShown) return;
    lastShown = shown;
    socket.send(shown);
  };

  document.addEventListener("htmx:wsOpen", (event) => {
    socket = event.detail.socketWrapper;
    lastShown = null;
    showLive("live", "live");
    reportShown();
  });
  document.addEventListener("htmx:wsClose", () => {
    showLive("disconnected", "disconnected, retrying");
  });
  document.addEventListener("htmx:afterSettle", reportShown);

  // -- pushes never target what the page lacks -----------------------------------------------
  // The server sends each page only what it shows, but a push may cross the page's own change
  // (a tab, a search, a page of the list loading): htmx would log htmx:oobErrorNoTarget for an
  // element whose id the page no longer has. Such elements are dropped here.
  const withoutAbsentTargets = (message) => {
    const template = document.createElement("template");
    template.innerHTML = message;
    let dropped = false;
    for (const element of Array.from(template.content.children)) {
      const oob = element.getAttribute("hx-swap-oob");
      if (element.id && (oob === null || oob === "true") && !document.getElementById(element.id)) {
        element.remove();
        dropped = true;
      }
    }
    return dropped ? template.innerHTML : message;
  };
  const swapPush = (message) => htmx.swap(document.body, message, { swapStyle: "none" });

  // A push that lands while a request sent from a pushed panel is on its way replaces the element
  // that sent it; htmx then looks for the answer's out-of-band ids under that detached element,
  // finds none (htmx:oobErrorNoTarget) and drops the answer and its message. So pushes wait for
  // the answer, then follow it in the order they came (the newest state last). Any request
  // counts: panels are pushed from outside the socket's element too (a job's Cutover and
  // Throttle cards beside its live block).
  let inFlight = 0;
  let held = [];

  const release = () => {
    inFlight -= 1;
    if (inFlight > 0) return;
    const messages = held;
    held = [];
    for (const message of messages) {
      const kept = withoutAbsentTargets(message);
      if (kept.trim()) swapPush(kept);
    }
  };

  document.addEventListener("htmx:beforeRequest", (event) => {
    const sender = event.target;
    const xhr = event.detail && event.detail.xhr;
    if (!(sender instanceof Element) || !xhr) return;
    inFlight += 1;
    // After htmx's own load handler has swapped the answer (and also on error or abort).
    xhr.addEventListener("loadend", release, { once: true });
  });

  document.addEventListener("htmx:wsBeforeMessage", (event) => {
    const message = event.detail.message;
    if (inFlight > 0) {
      held.push(message);
      event.preventDefault();
      return;
    }
    const kept = withoutAbsentTargets(message);
    if (kept === message) return;
    event.preventDefault();
    if (kept.trim()) swapPush(kept);
  });
})();
