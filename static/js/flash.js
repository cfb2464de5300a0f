// Flash messages (#flash) clear themselves: a reload never shows them again, so a live page
// that kept them up would contradict it ("Job #4 queued." long after the job ran).
(() => {
  "use strict";
  if (window.reindexerFlash) return;
  window.reindexerFlash = true;
  const SECONDS = { error: 20, other: 8 };
  let timer = null;

  const schedule = () => {
    const area = document.getElementById("flash");
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (!area || !area.querySelector(".flash")) return;
    const seconds = area.querySelector(".flash-error") ? SECONDS.error : SECONDS.other;
    timer = setTimeout(() => {
      timer = null;
      for (const message of area.querySelectorAll(".flash")) message.remove();
    }, seconds * 1000);
  };

  const onSwap = (event) => {
    const target = event.detail && (event.detail.target || event.detail.elt);
    if (target && target.id === "flash") schedule();
  };
  document.addEventListener("htmx:oobAfterSwap", onSwap);
  document.addEventListener("htmx:afterSwap", onSwap);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", schedule);
  } else {
    schedule();
  }
})();
