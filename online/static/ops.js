// The operator page: versions, gate, the last minutes per tier, latency, errors, backlog, embedding map.
"use strict";

(() => {
  const { call, el, showError } = HR;
  const REFRESH_MS = 5000;
  const TIER_ORDER = ["reranked", "hybrid", "session", "precomputed", "popular"];
  const $ = (id) => document.getElementById(id);
  const charts = {};
  let mapVersion = null;

  const palette = (i, n) => `hsl(${Math.round((i * 360) / Math.max(n, 1))}, 65%, 48%)`;
  const minuteLabel = (unix) => new Date(unix * 1000).toISOString().slice(11, 16);

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 90) return `${Math.round(seconds)} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
    return `${(seconds / 86400).toFixed(1)} d`;
  }

  function chart(id, type, options) {
    if (!charts[id]) {
      charts[id] = new Chart($(id), {
        type,
        data: { labels: [], datasets: [] },
        options: { animation: false, responsive: true, maintainAspectRatio: false, ...options },
      });
    }
    return charts[id];
  }

  function setSeries(id, type, labels, series, options) {
    const c = chart(id, type, options);
    const names = Object.keys(series);
    c.data.labels = labels;
    c.data.datasets = names.map((name, i) => ({
      label: name,
      data: series[name],
      backgroundColor: palette(i, names.length),
      borderColor: palette(i, names.length),
      spanGaps: true,
    }));
    c.update("none");
  }

  function metric(m, model, name) {
    const v = m && m[model] && m[model][name];
    return typeof v === "number" ? v.toFixed(3) : "–";
  }

  function renderVersions(versions, serving) {
    $("serving-version").textContent = serving.version || "none loaded";
    $("serving-problem").textContent = serving.last_error ? `last load problem: ${serving.last_error}` : "";
    const body = $("versions");
    body.replaceChildren();
    if (versions.error) {
      body.append(el("tr", {}, el("td", { colspan: "9", text: versions.error })));
      return;
    }
    const k = versions.current && versions.current.metrics && versions.current.metrics.k;
    if (k) {
      $("recall-head").textContent = `Recall@${k} ALS / pop.`;
      $("ndcg-head").textContent = `NDCG@${k} ALS / pop.`;
    }
    for (const role of ["current", "previous"]) {
      const v = versions[role];
      if (!v) {
        body.append(el("tr", {}, el("th", { text: role }), el("td", { colspan: "8", class: "muted", text: "none" })));
        continue;
      }
      const m = v.metrics || {};
      body.append(
        el(
          "tr",
          { "data-role": role },
          el("th", { text: role }),
          el("td", {}, el("code", { text: v.version })),
          el("td", { text: `${ago(v.age_s)} ago` }),
          el("td", { text: ago(v.data_age_s) }),
          el("td", { text: (v.n_users ?? 0).toLocaleString() }),
          el("td", { text: (v.n_items ?? 0).toLocaleString() }),
          el("td", { text: `${metric(m, "als", "recall")} / ${metric(m, "popularity", "recall")}` }),
          el("td", { text: `${metric(m, "als", "ndcg")} / ${metric(m, "popularity", "ndcg")}` }),
          el("td", { text: v.reranker ? "yes" : "no" })
        )
      );
    }
  }

  function renderGate(gate) {
    const box = $("gate");
    if (gate.error) return (box.textContent = gate.error);
    const d = gate.decision;
    if (!d) return (box.textContent = "no decision recorded yet (the daily DAG's quality_gate task records it)");
    const when = new Date(d.decided_at * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC";
    box.replaceChildren(
      el("span", { class: `badge gate-${d.outcome}`, text: d.outcome }),
      el("span", { text: ` for ${d.partition} at ${when}: ${d.message}` })
    );
  }

  function renderWindow(w) {
    if (w.error) {
      showError(`per-minute window: ${w.error}`);
      return;
    }
    const labels = w.minutes.map(minuteLabel);
    const tiers = Object.fromEntries(
      Object.entries(w.tiers).sort(([a], [b]) => TIER_ORDER.indexOf(a) - TIER_ORDER.indexOf(b))
    );
    const stacked = { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } };
    setSeries("tiers-chart", "bar", labels, tiers, stacked);
    setSeries("flags-chart", "line", labels, w.flags, { scales: { y: { beginAtZero: true } } });
    const errors = {};
    for (const [kind, values] of Object.entries(w.store_errors)) errors[`store ${kind}`] = values;
    for (const [outcome, values] of Object.entries(w.events)) errors[`events ${outcome}`] = values;
    setSeries("errors-chart", "bar", labels, errors, { scales: { y: { beginAtZero: true } } });

    const names = Object.keys(w.latency).sort((a, b) => TIER_ORDER.indexOf(a) - TIER_ORDER.indexOf(b));
    setSeries(
      "latency-chart",
      "bar",
      names,
      {
        p50: names.map((t) => w.latency[t].p50_ms),
        p90: names.map((t) => w.latency[t].p90_ms),
        p99: names.map((t) => w.latency[t].p99_ms),
      },
      { scales: { y: { beginAtZero: true, title: { display: true, text: "ms" } } } }
    );
    $("latency").replaceChildren(
      ...names.map((t) => {
        const l = w.latency[t];
        const fmt = (v) => (v === null ? "–" : v.toFixed(2));
        return el(
          "tr",
          { "data-tier": t },
          el("th", { text: t }),
          el("td", { text: l.count.toLocaleString() }),
          el("td", { text: fmt(l.p50_ms) }),
          el("td", { text: fmt(l.p90_ms) }),
          el("td", { text: fmt(l.p99_ms) })
        );
      })
    );
  }

  async function renderMap() {
    const { data } = await call("GET", "/ops/embedding");
    mapVersion = data.version;
    $("map-version").textContent = data.version;
    $("map-caption").textContent =
      `PCA of the unit item factors (all ${data.n_items.toLocaleString()} items; axes explain ` +
      `${(data.explained[0] * 100).toFixed(1)}% and ${(data.explained[1] * 100).toFixed(1)}% of the variance); ` +
      `the ${data.points.length.toLocaleString()} most popular items drawn, coloured by category.`;
    const n = data.categories.length;
    const sets = data.categories.map((name, i) => ({
      label: name,
      data: [],
      pointRadius: 2,
      backgroundColor: palette(i, n),
      borderColor: palette(i, n),
    }));
    for (const [x, y, c, id] of data.points) sets[c].data.push({ x, y, id });
    const c = chart("embedding-map", "scatter", {
      parsing: false,
      plugins: {
        legend: { position: "right" },
        tooltip: { callbacks: { label: (ctx) => `${ctx.raw.id} (category ${ctx.dataset.label})` } },
      },
      scales: { x: { title: { display: true, text: "PC 1" } }, y: { title: { display: true, text: "PC 2" } } },
    });
    c.data.datasets = sets;
    c.update("none");
    document.body.dataset.mapPoints = String(data.points.length);
  }

  async function refresh() {
    try {
      const { data } = await call("GET", "/ops/data");
      renderVersions(data.versions, data.serving);
      renderGate(data.gate);
      $("backlog").textContent = data.backlog.error ? data.backlog.error : data.backlog.events_waiting.toLocaleString();
      showError("");
      renderWindow(data.window);
      if (data.serving.version && data.serving.version !== mapVersion) await renderMap();
      $("refreshed").textContent = new Date().toISOString().slice(11, 19) + " UTC";
      document.body.dataset.ready = "true";
    } catch (error) {
      showError(error.message);
    }
  }

  $("demo-link").href = HR.linkWithKey("/demo");
  if (!HR.needKey()) {
    refresh();
    setInterval(refresh, REFRESH_MS);
  }
})();
