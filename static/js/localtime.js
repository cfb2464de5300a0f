// The server writes every <time> in UTC; this shows it in the browser's own zone, labelled with
// the zone's short name ("2026-01-02 09:30:00 EST"). The datetime attribute, and the title that
// shows it on hover, stay the exact ISO time.
(() => {
  "use strict";

  const format = new Intl.DateTimeFormat("en-US", {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
    timeZoneName: "short",
  });

  const local = (moment) => {
    const parts = {};
    for (const part of format.formatToParts(moment)) parts[part.type] = part.value;
    return `${parts.year}-${parts.month}-${parts.day} ` +
      `${parts.hour}:${parts.minute}:${parts.second} ${parts.timeZoneName}`;
  };

  const apply = () => {
    for (const element of document.querySelectorAll("time[datetime]")) {
      const moment = new Date(element.getAttribute("datetime"));
      if (Number.isNaN(moment.getTime())) continue;
      const text = local(moment);
      // Only on change, so a MutationObserver elsewhere sees no churn.
      if (element.textContent !== text) element.textContent = text;
    }
  };

  document.addEventListener("DOMContentLoaded", () => {
    apply();
    // Swapped-in partials (requests and websocket pushes) arrive in UTC again.
    for (const name of ["htmx:afterSettle", "htmx:oobAfterSwap", "htmx:wsAfterMessage"]) {
      document.body.addEventListener(name, apply);
    }
  });
})();
