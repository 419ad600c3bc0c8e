// TinyLarge dashboard page: a snapshot, then server-sent events; everything is drawn with textContent
// (never innerHTML), so nothing a device publishes can become markup.
"use strict";

const S = { domains: {}, meta: {}, offset: 0, open: null };
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
const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v));
const clock = (ms) => (ms == null ? "-" : new Date(ms).toLocaleTimeString());
const stamp = (ms) => (ms == null ? "-" : new Date(ms).toLocaleString());

function age(ms) {
  if (ms == null) return "never";
  const s = Math.max(0, (Date.now() - S.offset - ms) / 1000);
  if (s < 60) return `${s.toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

function sparkline(points, w = 140, h = 28) {
  const box = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: "spark" });
  if (!points || points.length === 0) return box;
  const ys = points.map((p) => p[1]);
  const lo = Math.min(0, ...ys), hi = Math.max(1, ...ys);
  const t0 = points[0][0], t1 = points[points.length - 1][0] || t0 + 1;
  const x = (t) => (t1 === t0 ? w - 2 : 2 + ((t - t0) / (t1 - t0)) * (w - 4));
  const y = (v) => h - 2 - ((v - lo) / (hi - lo || 1)) * (h - 4);
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
  for (const [v, label] of [[lo, fmt(lo)], [hi, fmt(hi)]]) {
    const t = svg("text", { x: 2, y: y(v) + 4, class: "tick" }); t.textContent = label; box.append(t);
  }
  for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
    const e = svg("text", { x: x(t), y: h - 4, class: "tick", "text-anchor": anchor }); e.textContent = stamp(t);
    box.append(e);
  }
  box.append(svg("polyline", { points: pts.map((p) => `${x(p.ts)},${y(p.fields[field])}`).join(" "), class: "line" }));
  return box;
}

// ---------------------------------------------------------------------------------------------- layout
function section(name) {
  const m = S.meta[name] || { title: name, subject: "subject", result_stream: "risk" };
  const subj = m.subject;
  const sec = el("section", { id: `domain-${name}`, class: "domain", "data-domain": name });
  sec.append(el("h2", {}, el("span", { text: m.title || name }), el("span", { class: "muted", text: `  ${name}` })));
  sec.append(el("div", { class: "summary", id: `summary-${name}` }));
  const table = el("table", { class: "fleet", id: `fleet-${name}` });
  const head = el("tr");
  for (const c of [subj, "state", "model (active)", "last message", "tiny model says", `cloud ${m.result_stream}`,
    "recent", "counts"]) head.append(el("th", { text: c }));
  table.append(el("thead", {}, head), el("tbody"));
  sec.append(el("div", { class: "panel wide" }, el("h3", { text: "Fleet" }), table,
    el("p", { class: "muted empty", text: `no ${subj}s yet` })));
  const stages = el("table", { class: "fleet stages", id: `stages-${name}` });
  const shead = el("tr");
  for (const c of ["stage", "state", "model", "last status", "counts"]) shead.append(el("th", { text: c }));
  stages.append(el("thead", {}, shead), el("tbody"));
  sec.append(el("div", { class: "panel wide" }, el("h3", { text: "Stages (counts on their retained status)" }), stages,
    el("p", { class: "muted empty-stages", text: "no stage has reported yet" })));
  sec.append(el("div", { class: "panel" }, el("h3", { text: "Alerts and actions" }),
    el("ol", { class: "feed", id: `alerts-${name}` })));
  sec.append(el("div", { class: "panel" }, el("h3", {}, el("span", { text: "Dead letters " }),
    el("span", { class: "badge", id: `dlcount-${name}`, text: "0" })), el("ol", { class: "feed", id: `dl-${name}` })));
  sec.append(historyPanel(name, m));
  return sec;
}

function historyPanel(name, m) {
  const now = new Date();
  const local = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  const form = el("form", { class: "history-form", id: `hform-${name}` });
  const dev = el("input", { name: "device", list: `hdevs-${name}`, placeholder: m.subject, required: "required" });
  const meas = el("select", { name: "measurement" });
  for (const s of [m.result_stream, "inference"]) meas.append(el("option", { value: s, text: s }));
  const start = el("input", { type: "datetime-local", name: "start", value: local(new Date(now - 3 * 86400000)) });
  const end = el("input", { type: "datetime-local", name: "end", value: local(new Date(now.getTime() + 3600000)) });
  form.append(el("label", { text: `${m.subject} ` }, dev), el("datalist", { id: `hdevs-${name}` }),
    el("label", { text: "measurement " }, meas), el("label", { text: "from " }, start),
    el("label", { text: "to " }, end), el("button", { type: "submit", text: "Show" }));
  const out = el("div", { class: "history-out", id: `history-${name}` });
  form.addEventListener("submit", (ev) => { ev.preventDefault(); loadHistory(name, form, out); });
  return el("div", { class: "panel wide" }, el("h3", { text: "History (store)" }), form, out);
}

async function loadHistory(name, form, out) {
  const f = new FormData(form);
  const q = new URLSearchParams({ domain: name, device: f.get("device"), measurement: f.get("measurement") });
  for (const k of ["start", "end"]) if (f.get(k)) q.set(k, String(new Date(f.get(k)).getTime()));
  out.replaceChildren(el("p", { class: "muted", text: "loading…" }));
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
    const tr = el("tr", {}, el("td", { text: stamp(p.ts) }), el("td", { text: String(p.seq) }));
    for (const k of fields) tr.append(el("td", { text: p.fields[k] == null ? "" : fmt(p.fields[k]) }));
    tb.append(tr);
  }
  t.append(tb);
  out.append(t);
}

// ---------------------------------------------------------------------------------------------- rows
function resultText(res) {
  if (!res) return "-";
  const f = res.fields || {};
  const parts = [];
  if (typeof f.risk === "number") parts.push(`risk ${f.risk.toFixed(3)}`);
  if (typeof f.action === "string") parts.push(f.action);
  for (const [k, v] of Object.entries(f)) {
    if (["risk", "action", "alert"].includes(k) || parts.length >= 4) continue;
    parts.push(`${k} ${fmt(v)}`);
  }
  return parts.join(" · ");
}

// a stage (the cloud service) reports counts on its status but is no subject: it publishes no inference
function isStage(name, d) {
  const large = (S.meta[name] || {}).large_model || "";
  return !d.inference && !d.result && (d.device === "cloud" || (!!large && (d.model || "").startsWith(`${large}@`)));
}

function renderDevice(name, d) {
  const stage = isStage(name, d);
  const tbody = document.querySelector(`#${stage ? "stages" : "fleet"}-${name} tbody`);
  if (!tbody) return;
  let tr = tbody.querySelector(`tr[data-device="${CSS.escape(d.device)}"]`);
  if (!tr) {
    tr = el("tr", { "data-device": d.device });
    const cells = stage ? ["device", "state", "model", "age", "counts"]
      : ["device", "state", "model", "age", "inference", "result", "recent", "counts"];
    for (const c of cells) tr.append(el("td", { class: c }));
    const rows = [...tbody.children];
    const after = rows.find((r) => r.dataset.device > d.device);
    tbody.insertBefore(tr, after || null);
    document.querySelector(`#domain-${name} .${stage ? "empty-stages" : "empty"}`).hidden = true;
  }
  S.domains[name].devices[d.device] = d;
  if (stage) {
    S.domains[name].stages = { ...(S.domains[name].stages || {}), [d.device]: true };
    const c = (k) => tr.querySelector(`td.${k}`);
    tr.dataset.lastMs = d.last_ms == null ? "" : String(d.last_ms);
    c("device").textContent = d.device;
    c("state").replaceChildren(el("span", { class: `pill ${d.state === "online" ? "on" : "off"}`,
      text: d.state || "unknown" }));
    c("model").textContent = d.model || "-";
    c("age").textContent = age(d.last_ms);
    c("counts").textContent = Object.entries(d.counts || {}).map(([k, v]) => `${k} ${v}`).join(", ");
    summary(name);
    return;
  }
  tr.dataset.lastMs = d.last_ms == null ? "" : String(d.last_ms);
  const c = (k) => tr.querySelector(`td.${k}`);
  c("device").textContent = d.device;
  const st = d.state || "unknown";
  c("state").replaceChildren(el("span", { class: `pill ${st === "online" ? "on" : "off"}`, text: st }));
  c("model").textContent = (d.active_model && d.active_model !== d.model)
    ? `${d.model || "-"} (${d.active_model})` : (d.model || "-");
  c("age").textContent = age(d.last_ms);
  c("inference").textContent = d.inference
    ? `${d.inference.class || "?"}${d.inference.score == null ? "" : ` ${d.inference.score.toFixed(2)}`}` : "-";
  c("result").textContent = resultText(d.result);
  tr.classList.toggle("alerting", !!(d.result && d.result.fields && d.result.fields.alert === true));
  c("recent").replaceChildren(sparkline(d.history));
  c("counts").textContent = Object.entries(d.counts || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  summary(name);
}

function summary(name) {
  const dom = S.domains[name];
  const devs = Object.values(dom.devices).filter((d) => !(dom.stages || {})[d.device]);
  const on = devs.filter((d) => d.state === "online").length;
  const off = devs.filter((d) => d.state === "offline").length;
  const alerting = devs.filter((d) => d.result && d.result.fields && d.result.fields.alert === true).length;
  const box = document.getElementById(`summary-${name}`);
  box.replaceChildren(
    el("span", { class: "stat" }, el("b", { text: String(on) }), " online"),
    el("span", { class: "stat" }, el("b", { text: String(off) }), " offline"),
    el("span", { class: "stat" }, el("b", { text: String(alerting) }), " alerting now"),
    el("span", { class: "stat" }, el("b", { text: String(dom.deadletters_total || 0) }), " dead letters"));
  const tab = document.getElementById(`tab-${name}`);
  if (tab) tab.querySelector(".n").textContent = ` ${on}/${devs.length}`;
}

function addAlert(name, a) {
  const list = document.getElementById(`alerts-${name}`);
  const what = a.action ? `action ${a.action}` : "alert";
  list.prepend(el("li", { class: "alert" }, el("span", { class: "when", text: clock(a.ts) }),
    el("b", { text: ` ${a.device} ` }), el("span", { text: `${what}${a.score == null ? "" : ` (score ${fmt(a.score)})`}` })));
  while (list.children.length > 50) list.lastChild.remove();
}

function addDeadletter(name, r, total) {
  const list = document.getElementById(`dl-${name}`);
  list.prepend(el("li", { class: "dead" }, el("span", { class: "when", text: clock(r.ts) }),
    el("code", { class: "topic", text: ` ${r.topic} ` }), el("span", { class: "reason", text: r.reason })));
  while (list.children.length > 50) list.lastChild.remove();
  if (total != null) S.domains[name].deadletters_total = total;
  document.getElementById(`dlcount-${name}`).textContent = String(S.domains[name].deadletters_total || 0);
  summary(name);
}

function setBroker(connected) {
  const b = document.getElementById("broker");
  b.textContent = connected ? "broker: connected" : "broker: reconnecting";
  b.className = `pill ${connected ? "on" : "off"}`;
}

function applySnapshot(snap) {
  S.offset = Date.now() - snap.now_ms;
  setBroker(snap.broker.connected);
  document.getElementById("broker-url").textContent = `Broker ${snap.broker.url} as ${snap.broker.client_id}.`;
  const main = document.getElementById("domains");
  const tabs = document.getElementById("tabs");
  main.replaceChildren();
  tabs.replaceChildren();
  for (const [name, dom] of Object.entries(snap.domains)) {
    S.domains[name] = { devices: {}, deadletters_total: dom.deadletters_total };
    main.append(section(name));
    const m = S.meta[name] || { title: name };
    tabs.append(el("a", { href: `#domain-${name}`, id: `tab-${name}`, title: m.title || name }, el("span", { text: name }),
      el("span", { class: "n", text: "" })));
    for (const d of Object.values(dom.devices)) renderDevice(name, d);
    for (const a of dom.alerts) addAlert(name, a);
    for (const r of dom.deadletters) addDeadletter(name, r, null);
    summary(name);
  }
}

function connect() {
  const live = document.getElementById("live");
  const es = new EventSource("/api/events");
  es.addEventListener("open", () => { live.textContent = "page: live"; live.className = "pill on"; });
  es.addEventListener("error", () => { live.textContent = "page: reconnecting"; live.className = "pill off"; });
  es.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
  es.addEventListener("device", (e) => { const v = JSON.parse(e.data); renderDevice(v.domain, v.device); });
  es.addEventListener("alert", (e) => { const v = JSON.parse(e.data); addAlert(v.domain, v.alert); });
  es.addEventListener("deadletter", (e) => {
    const v = JSON.parse(e.data); addDeadletter(v.domain, v.deadletter, v.total);
  });
  es.addEventListener("tick", (e) => {
    const v = JSON.parse(e.data);
    S.offset = Date.now() - v.now_ms;
    setBroker(v.connected);
    for (const tr of document.querySelectorAll("tr[data-device]")) {
      tr.querySelector("td.age").textContent = age(tr.dataset.lastMs ? Number(tr.dataset.lastMs) : null);
    }
  });
}

async function main() {
  const r = await fetch("/api/domains");
  S.meta = await r.json();
  connect();
}

main();
