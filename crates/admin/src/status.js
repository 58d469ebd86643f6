// mcp-edge's status page: refreshes the page's <main> every 5 seconds, in place, so
// that scroll position and zoom stay put. With JavaScript off the page refreshes
// itself instead (a <noscript> meta refresh). Nothing is loaded from elsewhere.
"use strict";
(() => {
  const every = 5000;
  let refreshes = 0;
  async function refresh() {
    if (document.hidden) return;
    try {
      const response = await fetch(location.href, { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const next = new DOMParser().parseFromString(await response.text(), "text/html");
      const main = next.querySelector("main");
      if (!main) throw new Error("no <main> in the answer");
      document.querySelector("main").replaceWith(document.adoptNode(main));
      document.title = next.title;
      refreshes += 1;
      document.documentElement.dataset.refreshes = String(refreshes);
      delete document.documentElement.dataset.stale;
    } catch (e) {
      // The banner says the gateway does not answer; the last answer stays shown.
      document.documentElement.dataset.stale = "unreachable";
    }
  }
  setInterval(refresh, every);
})();
