/**
 * The dashboard's static files, served by the Worker itself (no build step, no asset host): its
 * stylesheet, uPlot 1.6.32 (the chart library, from node_modules, imported as Text modules through
 * wrangler.toml [[rules]]) and the few lines that draw the stats chart with it. A path carries the
 * version or a digest of the content, so the answer is cacheable for a year (`immutable`).
 */
import { Hono } from "hono";
import uplotCss from "uplot/dist/uPlot.min.css";
import uplotJs from "uplot/dist/uPlot.iife.min.js";
import dashboardCss from "./static/dashboard.css";

/**
 * The stats page's chart (progressive enhancement: the page's table has the same numbers). Reads the
 * page's JSON data island, draws one series per metric; uPlot's legend toggles series by click or key.
 */
const STATS_JS = `"use strict";
(function () {
  var island = document.getElementById("stats-data");
  var target = document.getElementById("stats-chart");
  if (!island || !target || typeof uPlot !== "function") return;
  var data = JSON.parse(island.textContent);
  var palette = ["#0b57d0","#146c2e","#b3261e","#8430ce","#b06000","#00639b","#5f6368","#c5221f",
    "#188038","#a142f4","#e37400","#1967d2","#d01884","#137333","#9334e6","#ea8600"];
  var series = [{}].concat(data.metrics.map(function (m, i) {
    return { label: m, stroke: palette[i % palette.length], width: 2, show: data.shown.indexOf(m) >= 0 };
  }));
  var columns = [data.days.map(function (d) { return Date.parse(d + "T00:00:00Z") / 1000; })]
    .concat(data.metrics.map(function (m) { return data.values[m]; }));
  var width = Math.max(320, target.clientWidth || 800);
  new uPlot({ title: "Per day (UTC)", width: width, height: 320, series: series,
    scales: { x: { time: true } }, axes: [{}, { label: "count" }] }, columns, target);
})();
`;

/** FNV-1a, 32 bits: enough to give a changed file a new name (not a security property). */
/**
 * Copy buttons (the domain page's DNS records): shown only where the script runs, since without it
 * the value is plain selectable text; each copies the text of the element its data-copy names.
 */
const COPY_JS = `"use strict";
(function () {
  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.textContent).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 2000);
      });
    });
  });
})();
`;

function digest(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}

interface Asset {
  path: string;
  type: string;
  body: string;
}

/** Paths: uPlot's carry its pinned version, ours a digest of their content. */
export const ASSETS: Record<"css" | "uplotCss" | "uplotJs" | "statsJs" | "copyJs", Asset> = {
  css: {
    path: `/app/assets/dashboard-${digest(dashboardCss)}.css`,
    type: "text/css; charset=utf-8",
    body: dashboardCss,
  },
  uplotCss: { path: "/app/assets/uplot-1.6.32.min.css", type: "text/css; charset=utf-8", body: uplotCss },
  uplotJs: {
    path: "/app/assets/uplot-1.6.32.iife.min.js",
    type: "text/javascript; charset=utf-8",
    body: uplotJs,
  },
  statsJs: {
    path: `/app/assets/stats-${digest(STATS_JS)}.js`,
    type: "text/javascript; charset=utf-8",
    body: STATS_JS,
  },
  copyJs: {
    path: `/app/assets/copy-${digest(COPY_JS)}.js`,
    type: "text/javascript; charset=utf-8",
    body: COPY_JS,
  },
};

export const assetsApi = new Hono().get("/:file", (c) => {
  const wanted = `/app/assets/${c.req.param("file")}`;
  const asset = Object.values(ASSETS).find((a) => a.path === wanted);
  if (!asset) return c.text("Not Found", 404);
  return c.body(asset.body, 200, {
    "content-type": asset.type,
    "cache-control": "public, max-age=31536000, immutable",
    "x-content-type-options": "nosniff",
  });
});
