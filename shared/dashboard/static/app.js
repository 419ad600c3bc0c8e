// TinyLarge dashboard page. The server inlines the first state (so the page shows the fleet on load), then
// the page polls /api/state each second for what changed since the version it holds, one page of subjects
// per domain: its work and the bytes it reads do not grow with the fleet. Everything is drawn with
// textContent (never innerHTML), so nothing a device publishes can become markup.
"use strict";

const LIMIT = 50; // subjects per page
const POLL_MS = 1000;
const SIMULATED_MS = 5 * 60 * 1000; // a fleet clock this far from the wall clock is called simulated
// per domain: view {offset, q, only}, rows (id -> row of the current page), stages, the last page's ids
const S = { meta: {}, version: 0, offset: 0, views: {}, rows: {}, stages: {}, ids: {}, toggled: {},
  viewSeq: 0, full: false, busy: false, again: false, timer: null, waiters: [] };

const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};
const SVGNS = "http://www.w3.org/2000/svg";
const svg = (tag, attrs = {}) => {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};
const thousands = (v) => v.toLocaleString("en-US", { maximumFractionDigits: 0 });
function num(v) {
  if (typeof v !== "number") return String(v);
  const a = Math.abs(v);
  if (Number.isInteger(v) || a >= 1000) return thousands(v);
  return v.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3);
}
const pad = (n) => String(n).padStart(2, "0");
function dateTime(ms) {
  if (ms == null) return "-";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}` +
    `:${pad(d.getSeconds())}`;
}
const wallTime = (ms) => (ms == null ? "-" : new Date(ms).toLocaleTimeString("en-GB"));

function age(ms) {
  if (ms == null) return "never";
  const s = Math.max(0, (Date.now() - S.offset - ms) / 1000);
  if (s < 60) return `${s.toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

function span(ms) {
  const a = Math.abs(ms) / 1000;
  if (a < 3600) return `${(a / 60).toFixed(0)} min`;
  if (a < 86400 * 2) return `${(a / 3600).toFixed(1)} h`;
  if (a < 86400 * 730) return `${(a / 86400).toFixed(1)} days`;
  return `${(a / 86400 / 365.25).toFixed(1)} years`;
}

// ------------------------------------------------------------------------------------------- fields
const fieldMeta = (name, k) => ((S.meta[name] || {}).fields || {})[k] || { label: k.replaceAll("_", " "), unit: "" };
function fieldText(name, k, v) {
  const m = fieldMeta(name, k);
  if (typeof v !== "number") return `${m.label} ${v}`;
  return `${m.label} ${num(v)}${m.unit ? ` ${m.unit}` : ""}`;
}

// the large model's verdict and the baseline's, each with its labels and units
function resultParts(name, res) {
  const out = { cloud: "-", baseline: "-", title: "" };
  if (!res) return out;
  const f = res.fields || {};
  const cloud = [], base = [];
  const horizon = Object.keys(f).find((k) => k.startsWith("horizon") && typeof f[k] === "number");
  if (typeof f.risk === "number") {
    const h = horizon ? ` within ${num(f[horizon])} ${fieldMeta(name, horizon).unit}`.trimEnd() : "";
    cloud.push(`risk ${f.risk.toFixed(3)}${h}`);
  }
  if (typeof f.action === "string") cloud.push(f.action);
  for (const [k, v] of Object.entries(f)) {
    if (["risk", "action", "alert", "reason"].includes(k) || k === horizon) continue;
    (fieldMeta(name, k).baseline ? base : cloud).push(fieldText(name, k, v));
  }
  out.cloud = cloud.slice(0, 5).join(" · ") || "-";
  out.baseline = base.join(" · ") || "-";
  out.title = typeof f.reason === "string" ? f.reason : "";
  return out;
}

function tinyText(inf) {
  if (!inf) return "-";
  if (inf.class) return `${inf.class}${inf.score == null ? "" : `, p = ${inf.score.toFixed(2)}`}`;
  if (inf.events) {
    const ev = Object.entries(inf.events).map(([k, v]) => `${k} ${v}`).join(", ") || "no events";
    return inf.distance_km == null ? ev : `${ev} over ${num(inf.distance_km)} km`;
  }
  return "-";
}

function sparkline(points, threshold, w = 140, h = 28) {
  const box = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: "spark" });
  if (!points || points.length === 0) return box;
  const ys = points.map((p) => p[1]);
  const lo = Math.min(0, ...ys), hi = Math.max(1, ...ys);
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const x = (t) => (t1 === t0 ? w - 2 : 2 + ((t - t0) / (t1 - t0)) * (w - 4));
  const y = (v) => h - 2 - ((v - lo) / (hi - lo || 1)) * (h - 4);
  if (threshold != null) box.append(svg("line", { x1: 0, x2: w, y1: y(threshold), y2: y(threshold), class: "thr" }));
  box.append(svg("polyline", { points: points.map((p) => `${x(p[0])},${y(p[1])}`).join(" "), class: "line" }));
  const last = points[points.length - 1];
  box.append(svg("circle", { cx: x(last[0]), cy: y(last[1]), r: 2.5, class: "dot" }));
  return box;
}

function chart(points, field, w = 1200, h = 200) {
  const box = svg("svg", { width: "100%", viewBox: `0 0 ${w} ${h}`, class: "chart", role: "img" });
  const pts = points.filter((p) => typeof p.fields[field] === "number");
  if (pts.length === 0) return box;
  const ys = pts.map((p) => p.fields[field]);
  const lo = Math.min(...ys), hi = Math.max(...ys);
  const t0 = pts[0].ts, t1 = pts[pts.length - 1].ts;
  const x = (t) => (t1 === t0 ? w / 2 : 40 + ((t - t0) / (t1 - t0)) * (w - 50));
  const y = (v) => h - 20 - ((v - lo) / (hi - lo || 1)) * (h - 35);
  box.append(svg("line", { x1: 40, x2: w - 10, y1: h - 20, y2: h - 20, class: "axis" }));
  for (const v of [lo, hi]) {
    const t = svg("text", { x: 2, y: y(v) + 4, class: "tick" }); t.textContent = num(v); box.append(t);
  }
  for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
    const e = svg("text", { x: x(t), y: h - 4, class: "tick", "text-anchor": anchor }); e.textContent = dateTime(t);
    box.append(e);
  }
  box.append(svg("polyline", { points: pts.map((p) => `${x(p.ts)},${y(p.fields[field])}`).join(" "), class: "line" }));
  return box;
}

// ---------------------------------------------------------------------------------------------- layout
const COLS = ["device", "state", "model", "age", "tiny", "cloud", "baseline", "recent", "counts"];

function section(name) {
  const m = S.meta[name] || { title: name, subject: "subject", result_stream: "risk", baseline: "baseline" };
  const subj = m.subject;
  const sec = el("details", { id: `domain-${name}`, class: "domain", "data-domain": name, open: "open" });
  const head = el("summary", {}, el("span", { class: "title", text: m.title || name }),
    el("span", { class: "muted", text: ` ${name} ` }), el("span", { class: "summary", id: `summary-${name}` }));
  head.addEventListener("click", () => { S.toggled[name] = true; });
  sec.append(head);
  const body = el("div", { class: "domain-body" });
  body.append(el("p", { class: "rule muted", id: `rule-${name}` }), el("p", { class: "clock muted", id: `clock-${name}` }),
    el("p", { class: "live-loop", id: `loop-${name}`, hidden: "hidden" }));
  const table = el("table", { class: "fleet", id: `fleet-${name}` });
  const tr = el("tr");
  const heads = [subj, "state", "model", "last message", "tiny model says", `cloud ${m.result_stream}`,
    `baseline: ${m.baseline}`, "recent", "published · accepted · rejected"];
  heads.forEach((c, i) => tr.append(el("th", { class: COLS[i], text: c })));
  tr.lastChild.title = "messages seen by the dashboard: published (the device's own count, or the inferences " +
    "seen), accepted (cloud results for it), rejected (dead letters naming it)";
  table.append(el("thead", {}, tr), el("tbody"));
  body.append(el("div", { class: "panel wide" }, el("h3", { text: "Fleet" }), pager(name, subj), table,
    el("p", { class: "muted empty", text: `no ${subj}s yet` })));
  const stages = el("table", { class: "fleet stages", id: `stages-${name}` });
  const shead = el("tr");
  for (const c of ["stage", "state", "model", "last status", "counts (as of its last status)"]) {
    shead.append(el("th", { text: c }));
  }
  stages.append(el("thead", {}, shead), el("tbody"));
  body.append(el("div", { class: "panel wide" }, el("h3", { text: "Stages" }), stages,
    el("p", { class: "muted empty-stages", text: "no stage has reported yet" })));
  body.append(el("div", { class: "panel" }, el("h3", {}, el("span", { text: "Alerts and actions " }),
    el("span", { class: "muted", id: `alertclock-${name}`, text: "" })), el("ol", { class: "feed", id: `alerts-${name}` })));
  body.append(el("div", { class: "panel" }, el("h3", {}, el("span", { text: "Dead letters " }),
    el("span", { class: "badge", id: `dlcount-${name}`, text: "0" })), el("ol", { class: "feed", id: `dl-${name}` })));
  body.append(historyPanel(name, m));
  sec.append(body);
  return sec;
}

function pager(name, subj) {
  const box = el("div", { class: "pager", id: `pager-${name}` });
  const prev = el("button", { type: "button", class: "prev", text: "‹ previous" });
  const next = el("button", { type: "button", class: "next", text: "next ›" });
  const filter = el("input", { type: "search", class: "filter", placeholder: `${subj} id starts with…`, size: "18" });
  const only = el("input", { type: "checkbox", class: "only-alerting" });
  const view = () => (S.views[name] = S.views[name] || { offset: 0, q: "", only: "" });
  prev.addEventListener("click", () => { view().offset = Math.max(0, view().offset - LIMIT); refresh(true); });
  next.addEventListener("click", () => { view().offset += LIMIT; refresh(true); });
  filter.addEventListener("input", () => {
    if (/^[A-Za-z0-9_-]*$/.test(filter.value)) { Object.assign(view(), { q: filter.value, offset: 0 }); refresh(true); }
  });
  only.addEventListener("change", () => { Object.assign(view(), { only: only.checked ? "alerting" : "", offset: 0 }); refresh(true); });
  box.append(prev, el("span", { class: "range", text: "" }), next, filter,
    el("label", {}, only, el("span", { text: " alerting now only" })));
  return box;
}

const localInput = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60000).toISOString().slice(0, 16);

// the history form's default range: the three days before the fleet clock (simulated time in a demo)
function historyRange(name, fleetMs) {
  const form = document.getElementById(`hform-${name}`);
  if (!form || form.dataset.edited) return;
  form.elements.start.value = localInput(fleetMs - 3 * 86400000);
  form.elements.end.value = localInput(fleetMs + 3600000);
}

function historyPanel(name, m) {
  const now = new Date();
  const local = (d) => localInput(d.getTime());
  const form = el("form", { class: "history-form", id: `hform-${name}` });
  for (const t of ["input", "change"]) {
    form.addEventListener(t, (ev) => { if (ev.target.type === "datetime-local") form.dataset.edited = "1"; });
  }
  const dev = el("input", { name: "device", placeholder: m.subject, required: "required" });
  const meas = el("select", { name: "measurement" });
  for (const s of [m.result_stream, "inference"]) meas.append(el("option", { value: s, text: s }));
  const start = el("input", { type: "datetime-local", name: "start", value: local(new Date(now - 3 * 86400000)) });
  const end = el("input", { type: "datetime-local", name: "end", value: local(new Date(now.getTime() + 3600000)) });
  form.append(el("label", { text: `${m.subject} ` }, dev), el("label", { text: "measurement " }, meas),
    el("label", { text: "from " }, start), el("label", { text: "to " }, end), el("button", { type: "submit", text: "Show" }));
  const out = el("div", { class: "history-out", id: `history-${name}` });
  form.addEventListener("submit", (ev) => { ev.preventDefault(); loadHistory(name, form, out); });
  return el("div", { class: "panel wide" }, el("h3", { text: "History (store; times are the messages' own ts)" }), form, out);
}

async function loadHistory(name, form, out) {
  const f = new FormData(form);
  const q = new URLSearchParams({ domain: name, device: f.get("device"), measurement: f.get("measurement") });
  for (const k of ["start", "end"]) if (f.get(k)) q.set(k, String(new Date(f.get(k)).getTime()));
  out.replaceChildren(el("p", { class: "muted", text: "reading the store…" }));
  const r = await fetch(`/api/history?${q}`);
  const body = await r.json();
  if (!r.ok) { out.replaceChildren(el("p", { class: "error", text: body.error || r.statusText })); return; }
  const pts = body.points;
  const fields = [...new Set(pts.flatMap((p) => Object.keys(p.fields)))];
  const numeric = fields.filter((k) => pts.some((p) => typeof p.fields[k] === "number"));
  const field = numeric.includes("risk") ? "risk" : numeric[0];
  out.replaceChildren(el("p", { class: "hcount", text:
    `${body.count} point(s) of ${body.measurement} for ${body.device}${body.truncated ? " (newest shown)" : ""}` +
    (field ? `; chart: ${field}` : "") }));
  if (field) out.append(chart(pts, field));
  const t = el("table", { class: "htable" });
  const head = el("tr", {}, el("th", { text: "time" }), el("th", { text: "seq" }));
  for (const k of fields) head.append(el("th", { text: k }));
  t.append(el("thead", {}, head));
  const tb = el("tbody");
  for (const p of pts.slice(-20).reverse()) {
    const tr = el("tr", {}, el("td", { text: dateTime(p.ts) }), el("td", { text: String(p.seq) }));
    for (const k of fields) tr.append(el("td", { text: p.fields[k] == null ? "" : num(p.fields[k]) }));
    tb.append(tr);
  }
  t.append(tb);
  out.append(t);
}

// ---------------------------------------------------------------------------------------------- rows
const pill = (st) => el("span", { class: `pill ${st === "online" ? "on" : "off"}`, text: st || "unknown" });

function fillRow(name, tr, d, rule) {
  const c = (k) => tr.querySelector(`td.${k}`);
  tr.dataset.lastMs = d.last_ms == null ? "" : String(d.last_ms);
  c("device").textContent = d.device;
  c("state").replaceChildren(pill(d.state));
  const model = (d.active_model && d.active_model !== d.model) ? `${d.model || "-"} (${d.active_model})` : (d.model || "-");
  const sc = d.status_counts || {};
  const upd = ("accepted" in sc || "rejected" in sc) && (sc.accepted || sc.rejected)
    ? ` · updates ${sc.accepted || 0} installed, ${sc.rejected || 0} refused` : "";
  c("model").textContent = model + upd;
  c("age").textContent = age(d.last_ms);
  c("tiny").textContent = tinyText(d.inference);
  const parts = resultParts(name, d.result);
  c("cloud").textContent = parts.cloud;
  c("cloud").title = parts.title;
  c("baseline").textContent = parts.baseline;
  tr.classList.toggle("alerting", !!d.alerting);
  c("recent").replaceChildren(sparkline(d.history, rule && rule.scored ? rule.threshold : null));
  const n = d.counts || {};
  c("counts").textContent = `${thousands(n.published || 0)} · ${thousands(n.accepted || 0)} · ${thousands(n.rejected || 0)}`;
}

function renderPage(name, dom, current) {
  const rows = S.rows[name];
  for (const [id, d] of Object.entries(dom.devices)) rows[id] = d;
  const ids = dom.page.ids;
  if (ids.some((id) => !rows[id])) S.full = true; // a row that entered the page unchanged: ask for all
  for (const id of Object.keys(rows)) if (!ids.includes(id)) delete rows[id];
  const tbody = document.querySelector(`#fleet-${name} tbody`);
  const same = S.ids[name] === ids.join("\n");
  if (!same) {
    tbody.replaceChildren(...ids.map((id) => {
      const tr = el("tr", { "data-device": id });
      for (const k of COLS) tr.append(el("td", { class: k }));
      return tr;
    }));
    S.ids[name] = ids.join("\n");
  }
  for (const tr of tbody.children) {
    const d = rows[tr.dataset.device];
    if (d && (!same || dom.devices[d.device])) fillRow(name, tr, d, dom.rule);
    else tr.querySelector("td.age").textContent = age(tr.dataset.lastMs ? Number(tr.dataset.lastMs) : null);
  }
  const p = dom.page;
  const sec = document.getElementById(`domain-${name}`);
  sec.querySelector(".empty").hidden = p.total > 0;
  sec.querySelector(".empty").textContent = dom.summary.subjects && p.total === 0
    ? `no ${S.meta[name].subject} matches` : `no ${S.meta[name].subject}s yet`;
  const pg = document.getElementById(`pager-${name}`);
  if (current) S.views[name] = { ...(S.views[name] || { q: "", only: "" }), offset: p.offset }; // clamped
  pg.querySelector(".range").textContent = p.total
    ? ` ${thousands(p.offset + 1)}–${thousands(p.offset + ids.length)} of ${thousands(p.total)}${p.only ? " alerting" : ""} `
    : " none ";
  pg.querySelector(".prev").disabled = p.offset === 0;
  pg.querySelector(".next").disabled = p.offset + ids.length >= p.total;
}

// a cluster worker (its heartbeat status) is dead once three heartbeats are missing: kill -9 sends no offline
function workerState(d) {
  const every = (d.status_counts || {}).heartbeat_ms;
  if (!d.worker || d.state !== "online" || d.last_ms == null) return d.state;
  return Date.now() - S.offset - d.last_ms > 3 * (every || 2000) ? "dead" : "online";
}

function renderStages(name, dom, full) {
  if (full) S.stages[name] = {};
  Object.assign(S.stages[name], dom.stages);
  const tbody = document.querySelector(`#stages-${name} tbody`);
  const list = Object.values(S.stages[name]).sort((a, b) => (a.device < b.device ? -1 : 1));
  tbody.replaceChildren(...list.map((d) => el("tr", { "data-device": d.device, "data-last-ms": d.last_ms ?? "" },
    el("td", { class: "device", text: d.device }), el("td", { class: "state" }, pill(workerState(d))),
    el("td", { class: "model", text: d.model || "-" }), el("td", { class: "age", text: age(d.last_ms) }),
    el("td", { class: "counts", text: Object.entries(d.status_counts || {}).map(([k, v]) => `${k} ${v}`).join(", ") }))));
  document.querySelector(`#domain-${name} .empty-stages`).hidden = list.length > 0;
}

function onFleetClock(dom) {
  const c = dom.clock;
  return c.fleet_ms != null && Math.abs(c.fleet_ms - c.wall_ms) > SIMULATED_MS;
}

function renderFeeds(name, dom, full) {
  const sim = onFleetClock(dom);
  const label = sim ? "sim" : "";
  const alerts = document.getElementById(`alerts-${name}`);
  const dead = document.getElementById(`dl-${name}`);
  if (full) { alerts.replaceChildren(); dead.replaceChildren(); }
  for (const a of dom.alerts) {
    const what = a.action ? `action ${a.action}` : "alert";
    alerts.prepend(el("li", { class: "alert" }, el("span", { class: "when", text: `${label} ${dateTime(a.ts)}`.trim() }),
      el("b", { text: ` ${a.device} ` }), el("span", { text: `${what}${a.score == null ? "" : ` (score ${num(a.score)})`}` })));
  }
  for (const r of dom.deadletters) {
    const when = r.fleet_ts != null ? `${label ? "sim ≈" : "≈"} ${dateTime(r.fleet_ts)}` : `wall ${wallTime(r.ts)}`;
    dead.prepend(el("li", { class: "dead", title: `the consumer dead-lettered it at ${dateTime(r.ts)} (wall clock)` },
      el("span", { class: "when", text: when }), el("code", { class: "topic", text: ` ${r.topic} ` }),
      el("span", { class: "reason", text: r.reason })));
  }
  for (const list of [alerts, dead]) while (list.children.length > 50) list.lastChild.remove();
  document.getElementById(`dlcount-${name}`).textContent = thousands(dom.summary.deadletters_total);
  document.getElementById(`alertclock-${name}`).textContent =
    `(${thousands(dom.summary.alerts_total)} since the dashboard started; times on the fleet clock)`;
}

function renderSummary(name, dom) {
  const m = S.meta[name], s = dom.summary, r = dom.rule, c = dom.clock;
  const stat = (n, what, cls = "") => el("span", { class: `stat ${cls}`.trim() }, el("b", { text: thousands(n) }), ` ${what}`);
  const empty = !s.subjects && !s.stages && !s.deadletters_total && !s.alerts_total;
  document.getElementById(`summary-${name}`).replaceChildren(...(empty
    ? [el("span", { class: "muted nothing", text: `no ${m.subject}s, stages or dead letters yet` })]
    : [stat(s.subjects, `${m.subject}s`, "subjects"), stat(s.online, "online"), stat(s.offline, "offline"),
      stat(s.alerting, "alerting now", "alerting-now"), stat(s.deadletters_total, "dead letters"),
      stat(s.stages, s.stages === 1 ? "stage" : "stages")]));
  const rule = document.getElementById(`rule-${name}`);
  if (r && r.scored) {
    rule.textContent = `Alerting now: the service's alert rule on each ${m.subject}'s risk: at or above ` +
      `${r.threshold.toFixed(3)} on ${r.windows} consecutive window(s), until it falls below ` +
      `${(r.threshold * r.rearm_fraction).toFixed(3)} (${r.source}).`;
  } else {
    rule.textContent = `Alerting now: ${m.subject}s whose latest ${m.result_stream} raised an alert` +
      (s.subjects ? ` (these results carry no risk score to run the alert rule on).` : ".");
  }
  const clock = document.getElementById(`clock-${name}`);
  if (c.fleet_ms != null) historyRange(name, c.fleet_ms);
  if (c.fleet_ms == null) clock.textContent = "Fleet clock: no result yet.";
  else if (onFleetClock(dom)) {
    const ahead = c.fleet_ms > c.wall_ms ? "ahead of" : "behind";
    clock.textContent = `Fleet clock (simulated time): ${dateTime(c.fleet_ms)}, ${span(c.fleet_ms - c.wall_ms)} ${ahead} ` +
      `the wall clock. Alert and dead-letter times are on this clock; "last message" is wall-clock time.`;
  } else clock.textContent = `Fleet clock: ${dateTime(c.fleet_ms)} (the devices' time, within minutes of the wall clock).`;
  renderLoop(name, dom.live_loop);
  const tab = document.getElementById(`tab-${name}`);
  if (tab) tab.querySelector(".n").textContent = ` ${thousands(s.online)}/${thousands(s.subjects)}`;
  const sec = document.getElementById(`domain-${name}`);
  sec.classList.toggle("empty-domain", empty);
  if (!S.toggled[name]) sec.open = !empty;
}

// the demo's live loop: the model the devices' event estimate came from before and after, and the fleet metric
function renderLoop(name, L) {
  const p = document.getElementById(`loop-${name}`);
  if (!p || !L) return;
  const f = (v) => (v == null ? "-" : typeof v === "number" ? v.toFixed(3) : String(v));
  p.hidden = false;
  p.textContent = L.model_after
    ? `Live loop (${L.live_loop}): ${L.model_before} -> ${L.model_after}; ${L.fleet_metric || "fleet metric"}: ` +
      `${f(L.fleet_metric_before)} before, ${f(L.fleet_metric_after)} after (teacher ${f(L.fleet_metric_teacher)}, ` +
      `${L.fleet_metric_windows ?? "-"} windows).`
    : `Live loop: ${L.live_loop}.`;
}

function setBroker(connected) {
  const b = document.getElementById("broker");
  b.textContent = connected ? "broker: connected" : "broker: reconnecting";
  b.className = `pill ${connected ? "on" : "off"}`;
}

function apply(st, current = true) {
  S.offset = Date.now() - st.now_ms;
  S.version = st.version;
  setBroker(st.broker.connected);
  document.getElementById("broker-url").textContent = `Broker ${st.broker.url} as ${st.broker.client_id}.`;
  for (const [name, dom] of Object.entries(st.domains)) {
    if (!document.getElementById(`domain-${name}`)) continue;
    if (st.full) S.rows[name] = {};
    renderPage(name, dom, current);
    renderStages(name, dom, st.full);
    renderFeeds(name, dom, st.full);
    renderSummary(name, dom);
  }
}

function build(st) {
  const main = document.getElementById("domains");
  const tabs = document.getElementById("tabs");
  main.replaceChildren();
  tabs.replaceChildren();
  for (const name of Object.keys(st.domains)) {
    S.rows[name] = {};
    S.stages[name] = {};
    main.append(section(name));
    const m = S.meta[name] || { title: name };
    tabs.append(el("a", { href: `#domain-${name}`, id: `tab-${name}`, title: m.title || name }, el("span", { text: name }),
      el("span", { class: "n", text: "" })));
  }
  apply(st);
}

// ---------------------------------------------------------------------------------------------- polling
function query() {
  const q = new URLSearchParams({ since: String(S.full ? 0 : S.version), limit: String(LIMIT) });
  for (const [name, v] of Object.entries(S.views)) {
    if (v.offset) q.set(`offset.${name}`, String(v.offset));
    if (v.q) q.set(`q.${name}`, v.q);
    if (v.only) q.set(`only.${name}`, v.only);
  }
  S.full = false;
  return q;
}

async function poll() {
  S.busy = true;
  clearTimeout(S.timer);
  const live = document.getElementById("live");
  const waiters = S.waiters.splice(0);
  try {
    const seq = S.viewSeq;
    const r = await fetch(`/api/state?${query()}`, { cache: "no-store" });
    if (!r.ok) throw new Error(`${r.status}`);
    apply(await r.json(), seq === S.viewSeq);
    live.textContent = "page: live"; live.className = "pill on";
  } catch (e) {
    live.textContent = "page: reconnecting"; live.className = "pill off";
    S.full = true;
  } finally {
    S.busy = false;
    for (const w of waiters) w();
    if (S.again) { S.again = false; poll(); } else S.timer = setTimeout(poll, POLL_MS);
  }
}

// ask now (a page flip, a filter): `full` answers every row of the new page; resolves once it is drawn
function refresh(full = false) {
  if (full) { S.full = true; S.viewSeq += 1; }
  return new Promise((resolve) => {
    S.waiters.push(resolve);
    if (S.busy) S.again = true; else poll();
  });
}

function main() {
  const data = JSON.parse(document.getElementById("tl-initial").textContent);
  S.meta = data.domains;
  build(data.state);
  S.timer = setTimeout(poll, POLL_MS);
}

window.tinylarge = { refresh, state: S };
main();
