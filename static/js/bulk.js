// The jobs list's selection for the bulk actions. Live pushes replace rows (out of band) and the
// list re-fetches its panel when a job appears or changes state; both bring fresh, unticked
// checkboxes. So the selection lives here, by job id, and is put back after every swap; a job
// that left the list (another tab, another page) leaves the selection too.
(() => {
  "use strict";
  if (window.reindexerBulk) return;
  window.reindexerBulk = true;
  const selected = new Set();

  const boxes = () => [...document.querySelectorAll('input.row-select[form="bulk-form"]')];
  const visibleBoxes = () => boxes().filter((box) => box.offsetParent !== null);

  const render = () => {
    const present = new Set(boxes().map((box) => box.value));
    for (const id of [...selected]) if (!present.has(id)) selected.delete(id);
    for (const box of boxes()) box.checked = selected.has(box.value);
    const all = document.querySelector("input.select-all");
    if (all) {
      const shown = visibleBoxes();
      all.hidden = shown.length === 0;
      all.checked = shown.length > 0 && shown.every((box) => box.checked);
      all.indeterminate = !all.checked && shown.some((box) => box.checked);
    }
    const count = document.querySelector("[data-bulk-count]");
    if (count) {
      count.textContent = selected.size
        ? `${selected.size} job${selected.size === 1 ? "" : "s"} selected`
        : "Tick jobs to act on several at once.";
    }
  };

  document.addEventListener("change", (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement)) return;
    if (box.matches("input.row-select")) {
      if (box.checked) selected.add(box.value);
      else selected.delete(box.value);
    } else if (box.matches("input.select-all")) {
      for (const row of visibleBoxes()) {
        if (box.checked) selected.add(row.value);
        else selected.delete(row.value);
      }
    } else {
      return;
    }
    render();
  });

  // "Back" on a confirmation shown in the page: close it, keep the selection.
  document.addEventListener("click", (event) => {
    const link = event.target instanceof Element && event.target.closest("[data-bulk-dismiss]");
    const holder = link && link.closest("#bulk-confirm");
    if (!holder || !document.getElementById("jobs-panel")) return;
    event.preventDefault();
    holder.replaceChildren();
  });

  // A confirmed bulk action is done: its jobs are no longer "to act on". (Before the swap: the
  // answer removes the form, and events of a detached element no longer reach the document.)
  document.addEventListener("htmx:beforeSwap", (event) => {
    const config = event.detail && event.detail.requestConfig;
    const form = config && config.elt; // detail.elt is the target here
    const xhr = event.detail && event.detail.xhr;
    if (form instanceof Element && form.matches("[data-bulk-confirmed]") && xhr && xhr.status === 200) {
      selected.clear();
      render();
    }
  });

  for (const name of ["htmx:afterSwap", "htmx:oobAfterSwap", "htmx:afterSettle", "htmx:wsAfterMessage"]) {
    document.addEventListener(name, render);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", render);
  else render();
})();
