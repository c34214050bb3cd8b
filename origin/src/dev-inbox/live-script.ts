// The inbox list page's only script, served as /static/inbox.js (the CSP allows `script-src 'self'`
// and nothing inline). It subscribes to /api/events (Server-Sent Events) and, on any change,
// refetches the current page (same search, same paging) and swaps in its server-rendered, already
// escaped #inbox block: no message data is ever turned into markup on the client. DOMParser
// documents run no scripts. Without JavaScript the page falls back to <noscript> refresh.
export const LIVE_SCRIPT = `"use strict";
(() => {
  const status = document.getElementById("live-status");
  const setStatus = (text) => { if (status) status.textContent = text; };
  let pending = false;
  let again = false;
  async function refresh() {
    if (pending) { again = true; return; }
    pending = true;
    try {
      const res = await fetch(location.href, { headers: { accept: "text/html" }, cache: "no-store" });
      if (!res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      for (const id of ["inbox", "count"]) {
        const next = doc.getElementById(id);
        const current = document.getElementById(id);
        if (next && current) current.replaceWith(document.importNode(next, true));
      }
    } finally {
      pending = false;
      if (again) { again = false; refresh(); }
    }
  }
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => setStatus("Live: new mail shows up here as it arrives."));
  events.addEventListener("error", () => setStatus("Live updates disconnected; retrying…"));
  for (const type of ["new", "delete", "clear"]) events.addEventListener(type, refresh);
})();
`;
