// A push that lands while a request sent from inside the live panels is on its way replaces the
// element that sent it; htmx then looks for the answer's out-of-band ids under that detached
// element, finds none (htmx:oobErrorNoTarget) and drops the answer and its message. So pushes
// wait for the answer, then follow it in the order they came (the newest state last).
(() => {
  "use strict";
  if (window.reindexerLive) return;
  window.reindexerLive = true;
  let inFlight = 0;
  let held = [];

  const release = () => {
    inFlight -= 1;
    if (inFlight > 0) return;
    const messages = held;
    held = [];
    for (const message of messages) window.htmx.swap(document.body, message, { swapStyle: "none" });
  };

  document.addEventListener("htmx:beforeRequest", (event) => {
    const sender = event.target;
    const xhr = event.detail && event.detail.xhr;
    if (!(sender instanceof Element) || !sender.closest("[ws-connect]") || !xhr) return;
    inFlight += 1;
    // After htmx's own load handler has swapped the answer (and also on error or abort).
    xhr.addEventListener("loadend", release, { once: true });
  });

  document.addEventListener("htmx:wsBeforeMessage", (event) => {
    if (inFlight === 0) return;
    held.push(event.detail.message);
    event.preventDefault();
  });
})();
