// Shared by the node's and the validator's dashboards: DOM helpers that only ever set text (never HTML,
// so nothing a peer sends can become markup), number formats, a canvas line chart, and the poll loop.
"use strict";

const Dash = (() => {
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fill(id, ...children) {
    const node = document.getElementById(id);
    node.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function text(id, value) {
    document.getElementById(id).textContent = value === null || value === undefined ? "–" : String(value);
  }

  function number(value, digits = 1) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    return Number(value).toLocaleString("en", { maximumFractionDigits: digits });
  }

  // Integer amounts arrive as decimal strings (wei does not fit a double); shown with `decimals` places.
  function units(value, decimals, shown = 4) {
    if (value === null || value === undefined) return "–";
    const digits = String(value).replace(/^-/, "").padStart(decimals + 1, "0");
    const whole = digits.slice(0, digits.length - decimals);
    const fraction = digits.slice(digits.length - decimals).slice(0, shown).replace(/0+$/, "");
    return (String(value).startsWith("-") ? "-" : "") + BigInt(whole).toLocaleString("en") + (fraction ? "." + fraction : "");
  }

  function ago(ms, now) {
    if (!ms) return "–";
    const s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 90) return s + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }

  function badge(label, kind) {
    return el("span", { class: "badge " + kind }, label);
  }

  function table(headers, rows, empty) {
    if (!rows.length) return el("p", { class: "muted" }, empty);
    return el(
      "table",
      {},
      el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows.map((row) => el("tr", {}, ...row.map((cell) => el("td", {}, cell))))),
    );
  }

  function pairs(entries) {
    return el("dl", {}, ...entries.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }

  // A line chart of one series on a canvas. The canvas carries what it drew (data-points, data-last,
  // data-peak) so people's tools and tests can read it without decoding pixels.
  class LineChart {
    constructor(canvas, { color = "#2a7ab0", unit = "" } = {}) {
      this.canvas = canvas;
      this.color = color;
      this.unit = unit;
    }

    draw(points) {
      const canvas = this.canvas;
      const ratio = window.devicePixelRatio || 1;
      const width = canvas.clientWidth || 320;
      const height = canvas.clientHeight || 120;
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      const g = canvas.getContext("2d");
      g.setTransform(ratio, 0, 0, ratio, 0, 0);
      g.clearRect(0, 0, width, height);
      const values = points.map((p) => p[1]).filter((v) => v !== null);
      const peak = values.length ? Math.max(...values) : 0;
      const top = peak > 0 ? peak * 1.15 : 1;
      const pad = { left: 44, right: 8, top: 8, bottom: 18 };
      const w = width - pad.left - pad.right;
      const h = height - pad.top - pad.bottom;
      g.font = "11px system-ui, sans-serif";
      g.fillStyle = "#777";
      g.strokeStyle = "#ddd";
      g.lineWidth = 1;
      for (let i = 0; i <= 2; i++) {
        const y = pad.top + h - (h * i) / 2;
        g.beginPath();
        g.moveTo(pad.left, y);
        g.lineTo(pad.left + w, y);
        g.stroke();
        g.fillText(number((top * i) / 2, top < 10 ? 2 : 0), 2, y + 4);
      }
      if (points.length > 1) {
        const t0 = points[0][0];
        const span = Math.max(points[points.length - 1][0] - t0, 1);
        g.fillText(Math.round(span / 1000) + " s", pad.left + w - 30, height - 4);
        g.strokeStyle = this.color;
        g.lineWidth = 2;
        g.fillStyle = this.color;
        g.beginPath();
        points.forEach(([t, v], i) => {
          if (v === null) return;
          const x = pad.left + (w * (t - t0)) / span;
          const y = pad.top + h - (h * v) / top;
          const joined = i > 0 && points[i - 1][1] !== null;
          if (joined) g.lineTo(x, y);
          else g.moveTo(x, y);
          const alone = !joined && (i === points.length - 1 || points[i + 1][1] === null);
          if (alone) g.fillRect(x - 2, y - 2, 4, 4); // a value between gaps (a TTFT, say) shows as a dot
        });
        g.stroke();
      }
      const last = points.length ? points[points.length - 1][1] : null;
      canvas.dataset.points = String(points.length);
      canvas.dataset.last = last === null ? "" : String(last);
      canvas.dataset.peak = String(peak);
      const label = document.getElementById(canvas.id + "-now");
      if (label) label.textContent = last === null ? "–" : number(last, 2) + " " + this.unit;
    }
  }

  // One LineChart per canvas `chart-<name>` of `specs` ({ name: { key, color, unit } }), each plotting the
  // status history's `key` over time; `draw(history)` redraws them all from one GET /status.
  function historyCharts(specs) {
    const charts = Object.entries(specs).map(([name, { key, ...style }]) => [key, new LineChart(document.getElementById("chart-" + name), style)]);
    return {
      draw(history) {
        for (const [key, chart] of charts) chart.draw(history.map((p) => [p.at_ms, p[key]]));
      },
    };
  }

  // Fetch /status every `everyMs` and hand it to `render`; a failed fetch shows as a banner, and the
  // next one tries again (the daemon may be restarting).
  function poll(render, everyMs = 1000) {
    const banner = document.getElementById("offline");
    async function once() {
      try {
        const response = await fetch("/status", { cache: "no-store" });
        if (!response.ok) throw new Error("HTTP " + response.status);
        render(await response.json());
        banner.hidden = true;
        document.body.dataset.updated = String(Date.now());
      } catch (error) {
        banner.textContent = "Cannot reach the daemon (" + error.message + "): retrying.";
        banner.hidden = false;
      }
      setTimeout(once, everyMs);
    }
    once();
  }

  return { el, fill, text, number, units, ago, badge, table, pairs, LineChart, historyCharts, poll };
})();
