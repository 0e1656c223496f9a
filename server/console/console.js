// The pheromone console: plain JavaScript, no library. It polls the node's
// /v1/console/ endpoints (stats once a second, the rest every two or five
// seconds) and draws the topology, rates, triggers, functions, partitions,
// dead letters and a live tail.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
const fmt = (v, d = 1) => {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(d) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(d) + "k";
  if (a >= 100 || Number.isInteger(v)) return v.toFixed(0);
  return v.toFixed(d);
};
const nodeName = (s) => String(s || "").replace(/^pheromone@/, "");
const ms = (v) => (v ? (v < 1 ? v.toFixed(2) : v.toFixed(1)) + " ms" : "–");

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (await r.text()));
  return r.json();
}

let topo = null;
let stats = {};

// ---- topology: layers by longest path from the sources --------------------

function layout(t) {
  const incoming = {};
  t.nodes.forEach((n) => (incoming[n.id] = []));
  t.edges.forEach((e) => incoming[e.to] && incoming[e.to].push(e.from));
  const layer = {};
  const depth = (id, seen) => {
    if (layer[id] !== undefined) return layer[id];
    if (seen.has(id)) return 0; // a cycle: cut it
    seen.add(id);
    let d = 0;
    for (const f of incoming[id] || []) d = Math.max(d, depth(f, seen) + 1);
    seen.delete(id);
    layer[id] = d;
    return d;
  };
  t.nodes.forEach((n) => depth(n.id, new Set()));
  const cols = [];
  t.nodes.forEach((n) => (cols[layer[n.id]] = cols[layer[n.id]] || []).push(n));
  const W = 128, H = 40, GX = 44, GY = 14;
  const pos = {};
  cols.forEach((col, x) => col.forEach((n, y) => (pos[n.id] = { x: 10 + x * (W + GX), y: 10 + y * (H + GY), w: W, h: H })));
  const width = 20 + cols.length * (W + GX) - GX;
  const height = 20 + Math.max(...cols.map((c) => c.length)) * (H + GY) - GY;
  return { pos, width, height };
}

const kindColour = { source: "#e6f0fa", table: "#efe9f7", bucket: "#fdf3e1", trigger: "#e9f6ec", function: "#f5e9ef", sink: "#e8f3f5" };

function drawTopology() {
  if (!topo) return;
  const { pos, width, height } = layout(topo);
  const busy = busyness();
  // Wide apps scale down to the section's width rather than scroll.
  let svg = `<svg width="100%" style="max-width:${width}px" viewBox="0 0 ${width} ${height}" role="img" aria-label="topology">`;
  svg += `<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#9aa3b5"/></marker></defs>`;
  for (const e of topo.edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) continue;
    const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2;
    const mx = (x1 + x2) / 2;
    svg += `<path class="edge" marker-end="url(#arrow)" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}"/>`;
    const r = edgeRate(e);
    if (r !== null) svg += `<text class="rate" data-edge="${esc(e.from + ">" + e.to)}" x="${mx}" y="${(y1 + y2) / 2 - 3}" text-anchor="middle">${fmt(r)}/s</text>`;
  }
  for (const n of topo.nodes) {
    const p = pos[n.id];
    const heat = busy[n.id] || 0;
    const fill = heat > 0 ? `rgba(197,48,48,${Math.min(0.15 + heat * 0.6, 0.75)})` : kindColour[n.kind];
    svg += `<g class="node" data-id="${esc(n.id)}" data-kind="${n.kind}"><title>${esc(n.kind + " " + n.name + (n.detail ? " — " + n.detail : ""))}</title>`;
    svg += `<rect class="box" x="${p.x}" y="${p.y}" width="${p.w}" height="${p.h}" rx="6" fill="${fill}"/>`;
    svg += `<text x="${p.x + 7}" y="${p.y + 16}" font-weight="600">${esc(n.name.slice(0, 19))}</text>`;
    svg += `<text x="${p.x + 7}" y="${p.y + 30}" fill="#6b7385">${esc((n.kind + (n.detail ? " · " + n.detail : "")).slice(0, 22))}</text></g>`;
  }
  $("topology").innerHTML = svg + "</svg>";
}

function edgeRate(e) {
  if (!e.rate) return null;
  const [kind, name] = e.rate.split(/:(.*)/s);
  const m = { source: stats.sources, trigger: stats.triggers, sink: stats.sinks }[kind];
  return m ? m[name] || 0 : null;
}

// busyness is 0-1 per node: functions by error share and the node's
// blocked time, buckets by how full the task inboxes are.
function busyness() {
  const out = {};
  const blocked = (stats.blocked && (stats.blocked.executor || 0) + (stats.blocked.commit || 0)) || 0;
  for (const [name, f] of Object.entries(stats.functions || {})) {
    out["function:" + name] = Math.min(1, (f.rate ? f.errors / f.rate : 0) + blocked);
  }
  return out;
}

// ---- rates over the last minutes ------------------------------------------

const plots = [
  ["records_in", "records in /s"], ["records_out", "records out /s"], ["firings", "firings /s"],
  ["dead", "dead letters /s"], ["lag", "largest lag"], ["blocked", "backpressure s/s"], ["fn_p99_ms", "slowest p99 ms"],
];

function drawPlots() {
  const series = stats.series || {};
  let html = "";
  for (const [key, label] of plots) {
    const pts = series[key] || [];
    const now = pts.length ? pts[pts.length - 1][1] : 0;
    const W = 220, H = 44;
    let line = "";
    if (pts.length > 1) {
      const t0 = pts[0][0], t1 = pts[pts.length - 1][0] || t0 + 1;
      const vmax = Math.max(...pts.map((p) => p[1]), 1e-9);
      line = pts.map((p) => `${((p[0] - t0) / (t1 - t0 || 1)) * W},${H - (p[1] / vmax) * (H - 4) - 2}`).join(" ");
    }
    html += `<div class="plot" data-series="${key}"><span class="name">${label}</span><span class="now">${fmt(now)}</span>` +
      `<svg width="100%" height="${H}" viewBox="0 0 ${W} ${H}" preserveAspectRatio="none"><polyline points="${line}"/></svg></div>`;
  }
  $("plots").innerHTML = html;
}

// ---- tables ---------------------------------------------------------------

function drawFunctions() {
  const rows = (topo ? topo.nodes.filter((n) => n.kind === "function") : []).map((n) => {
    const f = (stats.functions || {})[n.name] || {};
    return `<tr data-function="${esc(n.name)}"><td>${esc(n.name)}</td><td>${esc(n.detail)}</td><td>${fmt(f.rate)}</td>` +
      `<td class="${f.errors ? "bad" : ""}">${fmt(f.errors)}</td><td>${ms(f.p50_ms)}</td><td>${ms(f.p99_ms)}</td></tr>`;
  });
  $("functions").tBodies[0].innerHTML = rows.join("");
}

let partitions = { nodes: [] };

function drawTriggers() {
  if (!topo) return;
  const pending = {}, progress = {};
  for (const n of partitions.nodes || [])
    for (const p of n.partitions || [])
      for (const b of p.buckets || [])
        for (const tv of b.triggers || []) {
          pending[tv.name] = (pending[tv.name] || 0) + (tv.pending || 0);
          for (const pr of tv.progress || []) (progress[tv.name] = progress[tv.name] || []).push(pr);
        }
  const rows = topo.nodes.filter((n) => n.kind === "trigger").map((n) => {
    const prs = (progress[n.name] || []).filter((p) => p.need !== 0 || p.session).slice(0, 5);
    const sessions = prs.map((p) => {
      const of = p.need > 0 ? `${p.have} of ${p.need}` : p.need < 0 ? `${p.have} of ? (waiting for the count)` : `${p.have}`;
      const missing = p.missing && p.missing.length ? ` · missing ${p.missing.join(", ")}` : "";
      return `<span class="pill" data-session="${esc(p.session || p.group || "")}">${esc(p.session || p.group || "")}: ${of}${esc(missing)}</span>`;
    });
    return `<tr data-trigger="${esc(n.name)}"><td>${esc(n.name)}</td><td>${esc(n.detail)}</td><td>${fmt((stats.triggers || {})[n.name])}</td>` +
      `<td>${pending[n.name] || 0}</td><td>${fmt((stats.late || {})[n.name] || 0)}</td><td>${fmt((stats.dropped || {})[n.name] || 0)}</td><td class="wrap">${sessions.join("")}</td></tr>`;
  });
  $("triggers").tBodies[0].innerHTML = rows.join("");
}

function drawPartitions() {
  const rows = [];
  for (const n of partitions.nodes || []) {
    if (n.error) rows.push(`<tr><td>${esc(nodeName(n.node))}</td><td colspan="9" class="bad">${esc(n.error)}</td></tr>`);
    const standby = new Set(n.standbys || []);
    for (const p of n.partitions || []) {
      const lag = Object.values(p.lag || {}).reduce((a, b) => a + b, 0);
      let held = 0, bytes = 0, windows = 0, wm = "", idle = "";
      for (const b of p.buckets || []) {
        held += b.held; bytes += b.bytes;
        for (const tv of b.triggers || []) {
          windows += (tv.progress || []).length;
          if (tv.watermark) wm = new Date(tv.watermark).toISOString().slice(11, 19);
          if (tv.idle !== undefined) idle = tv.idle ? "idle" : "active";
        }
      }
      const state = p.restoring ? `<span class="warn">restoring: ${p.restoring.remaining} records left, ${p.restoring.mb.toFixed(1)} MB</span>` : "running";
      rows.push(`<tr data-node="${esc(nodeName(n.node))}" data-partition="${p.partition}"><td>${esc(nodeName(n.node))}</td><td>${p.partition}</td><td>${fmt(lag)}</td>` +
        `<td>${(p.inbox_fill * 100).toFixed(0)}%</td><td>${fmt(held)}</td><td>${fmt(bytes)}</td><td>${wm || "–"}</td><td>${idle || "–"}</td><td>${windows}</td><td>${state}</td></tr>`);
    }
    if (standby.size) rows.push(`<tr><td>${esc(nodeName(n.node))}</td><td colspan="9" class="muted">standby copy of partitions ${[...standby].join(", ")}</td></tr>`);
    for (const s of n.stopped || []) rows.push(`<tr><td>${esc(nodeName(n.node))}</td><td colspan="9" class="bad">${esc(s)}</td></tr>`);
  }
  $("partitions").tBodies[0].innerHTML = rows.join("");
}

function drawDeadLetters(d) {
  $("dlq-topic").textContent = d.topic ? `(${d.topic}, newest first)` : "";
  $("deadletters").tBodies[0].innerHTML = (d.records || []).map((r) =>
    `<tr data-reason="${esc(r.reason)}"><td>${esc(new Date(r.time).toISOString().slice(11, 23))}</td><td class="bad">${esc(r.reason)}</td>` +
    `<td>${esc(r.origin)}</td><td class="wrap">${esc(r.error)}</td><td class="wrap">${esc(r.value)}</td></tr>`).join("");
}

// ---- live tail --------------------------------------------------------------

let source = null;

function tailOptions() {
  const opts = ['<option value="sink=dlq">dead-letter topic</option>'];
  for (const n of topo.nodes) {
    if (n.kind === "sink" && n.detail.startsWith("kafka")) opts.push(`<option value="sink=${esc(n.name)}">sink ${esc(n.name)}</option>`);
    if (n.kind === "sink" && n.detail === "table") opts.push(`<option value="table=${esc(n.name)}">table ${esc(n.name)}</option>`);
    if (n.kind === "bucket") opts.push(`<option value="bucket=${esc(n.name)}">bucket ${esc(n.name)}</option>`);
  }
  $("tail-what").innerHTML = opts.join("");
}

function follow() {
  if (source) { source.close(); source = null; $("tail-go").textContent = "follow"; $("tail-note").textContent = ""; return; }
  const out = $("tail");
  out.textContent = "";
  source = new EventSource("/v1/console/tail?" + $("tail-what").value);
  $("tail-go").textContent = "stop";
  const add = (line) => {
    out.textContent = (line + "\n" + out.textContent).slice(0, 20000);
  };
  source.addEventListener("record", (ev) => { const r = JSON.parse(ev.data); add(`[${r.partition}@${r.offset}] ${r.key ? r.key + " " : ""}${r.value}`); });
  source.addEventListener("snapshot", (ev) => { out.textContent = JSON.stringify(JSON.parse(ev.data), null, 1).slice(0, 20000); });
  source.addEventListener("skipped", (ev) => { $("tail-note").textContent = `${ev.data} records skipped in the last second (at most 10 a second are shown)`; });
  source.onerror = () => { $("tail-note").textContent = "the stream closed"; };
}

// ---- polling ------------------------------------------------------------------

async function every(period, fn) {
  for (;;) {
    try { await fn(); $("status").textContent = ""; } catch (e) { $("status").textContent = String(e.message || e); }
    await new Promise((r) => setTimeout(r, period));
  }
}

async function main() {
  topo = await getJSON("/v1/console/topology");
  $("app").textContent = topo.app;
  document.title = "pheromone · " + topo.app;
  tailOptions();
  $("tail-go").addEventListener("click", follow);
  every(1000, async () => {
    stats = await getJSON("/v1/console/stats");
    const t = stats.totals || {};
    $("node").textContent = `node ${nodeName(stats.node)} · up ${stats.uptime_s || 0} s · rates of ${stats.nodes || 1} node(s)`;
    $("totals").innerHTML = `<span>in ${fmt(t.in)}</span><span>out ${fmt(t.out)}</span><span>firings ${fmt(t.firings)}</span>` +
      `<span class="${t.dead_letters ? "bad" : ""}">dead letters ${fmt(t.dead_letters)}</span>`;
    drawTopology(); drawPlots(); drawFunctions(); drawTriggers();
  });
  every(2000, async () => { partitions = await getJSON("/v1/console/partitions"); drawPartitions(); drawTriggers(); });
  every(2000, async () => drawDeadLetters(await getJSON("/v1/console/deadletters?limit=50")));
}

main().catch((e) => { $("status").textContent = String(e.message || e); });
