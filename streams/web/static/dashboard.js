// affectstream live dashboard: every stream of the node, updated by server-sent events from the engine.
// Plain browser JavaScript, no build step. URL option: ?token=... (needed when the server has one).
"use strict";

const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
const COLORS = {
  angry: "#ff6b6b", disgust: "#8bc34a", fear: "#b388ff", happy: "#ffd54f",
  sad: "#4fc3f7", surprise: "#ff9f43", neutral: "#b0bec5",
};
const SPAN_S = 300; // the sparkline shows the last five minutes at most
const MIN_SPAN_S = 30;

const params = new URLSearchParams(location.search);
const token = params.get("token");
const $ = (id) => document.getElementById(id);
const cards = new Map(); // stream -> {el, points, latest, ...}
let messages = 0;
let dirty = new Set();

function q(path) {
  return token ? `${path}?token=${encodeURIComponent(token)}` : path;
}

function colorOf(label) {
  return COLORS[label] || "#9aa7b4";
}

function card(stream) {
  let c = cards.get(stream);
  if (c) return c;
  const el = $("card-tpl").content.firstElementChild.cloneNode(true);
  el.dataset.stream = stream;
  el.dataset.windows = "0";
  el.querySelector(".name").textContent = stream;
  c = { el, points: [], windows: 0, lastSeen: 0 };
  cards.set(stream, c);
  // keep the grid sorted by stream id so cards do not jump around
  const after = [...$("grid").children].find((n) => n.dataset.stream > stream);
  $("grid").insertBefore(el, after || null);
  updateCount();
  return c;
}

function remove(stream) {
  const c = cards.get(stream);
  if (!c) return;
  c.el.remove();
  cards.delete(stream);
  updateCount();
}

function updateCount() {
  document.body.dataset.streams = String(cards.size);
  $("count").textContent = `${cards.size} stream${cards.size === 1 ? "" : "s"}`;
}

function setStatus(c, status) {
  c.el.dataset.status = status;
  c.el.querySelector(".status").textContent = status;
}

function showLatest(c, latest, windows) {
  if (!latest) return;
  c.latest = latest;
  c.windows = windows;
  c.lastSeen = Date.now();
  c.el.dataset.windows = String(windows);
  c.el.dataset.label = latest.label;
  c.el.style.setProperty("--c", colorOf(latest.label));
  c.el.querySelector(".label").textContent = latest.label;
  c.el.querySelector(".score").textContent = Number(latest.score).toFixed(2);
  const f = c.el.querySelector(".faces");
  f.textContent = `faces ${latest.faces}`;
  f.classList.toggle("on", latest.faces > 0);
  const s = c.el.querySelector(".speech");
  s.textContent = latest.speech == null ? "no audio" : latest.speech ? "speech" : "silence";
  s.classList.toggle("on", !!latest.speech);
  c.el.querySelector(".windows").textContent = `${windows} windows`;
}

function showReasoning(c, r) {
  if (!r) return;
  const answer = r.valid ? r.answer : `${r.fallback || "?"} (fast label kept)`;
  c.el.querySelector(".reasoning").textContent = `${r.think} → ${answer}`;
  c.el.dataset.reasoning = "1";
}

function showSmoothed(c, s) {
  if (!s || !s.label) return;
  c.el.querySelector(".smoothed").textContent = `smoothed ${s.label} ${Number(s.score || 0).toFixed(2)}`;
}

function draw(c) {
  const cv = c.el.querySelector(".spark");
  const ctx = cv.getContext("2d");
  const w = cv.width;
  const h = cv.height;
  ctx.clearRect(0, 0, w, h);
  const pts = c.points;
  if (!pts.length) return;
  const tEnd = pts[pts.length - 1][0];
  const span = Math.min(SPAN_S, Math.max(MIN_SPAN_S, tEnd - pts[0][0]));
  const x = (t) => w - ((tEnd - t) / span) * w;
  const vis = pts.filter((p) => p[0] >= tEnd - span);
  // stacked scores: one column per window, from the previous window's time to its own
  const gaps = vis.slice(1).map((p, i) => x(p[0]) - x(vis[i][0])).sort((a, b) => a - b);
  const typical = gaps.length ? gaps[Math.floor(gaps.length / 2)] : 4;
  vis.forEach((p, i) => {
    const right = x(p[0]);
    const left = i > 0 ? Math.max(x(vis[i - 1][0]), right - 3 * typical) : right - typical;
    const sc = p[3] || {};
    const total = EMOTIONS.reduce((a, e) => a + Number(sc[e] || 0), 0) || 1;
    let y = h;
    for (const e of EMOTIONS) {
      const v = (Number(sc[e] || 0) / total) * h;
      if (v <= 0) continue;
      ctx.fillStyle = COLORS[e];
      ctx.fillRect(left, y - v, Math.max(1, right - left) + 0.5, v);
      y -= v;
    }
  });
  c.el.dataset.drawn = String(vis.length);
}

function scheduleDraw(c) {
  dirty.add(c);
  if (dirty.size === 1) {
    requestAnimationFrame(() => {
      for (const d of dirty) draw(d);
      dirty = new Set();
    });
  }
}

function addEvent(ev) {
  if (!ev || ev.type === "update") return;
  const li = document.createElement("li");
  const end = ev.end != null ? `–${Number(ev.end).toFixed(1)}s` : "";
  li.textContent = `${ev.stream}: ${ev.type} ${ev.label} @ ${Number(ev.start).toFixed(1)}s${end}`;
  $("events").prepend(li);
  while ($("events").children.length > 50) $("events").lastChild.remove();
}

function count() {
  messages += 1;
  document.body.dataset.messages = String(messages);
}

function onSnapshot(d) {
  $("node").textContent = d.node ? `node ${d.node}` : "";
  for (const s of [...cards.keys()]) if (!d.streams.some((x) => x.stream === s)) remove(s);
  for (const s of d.streams) {
    const c = card(s.stream);
    c.points = s.points || [];
    setStatus(c, s.status);
    showLatest(c, s.latest, s.windows);
    showSmoothed(c, s.smoothed);
    showReasoning(c, s.reasoning);
    scheduleDraw(c);
  }
  $("events").replaceChildren();
  for (const ev of d.events || []) addEvent(ev);
}

function connect() {
  const es = new EventSource(q("dashboard/events"));
  es.onopen = () => {
    document.body.dataset.connected = "1";
    $("conn").textContent = "live";
  };
  es.onerror = () => {
    document.body.dataset.connected = "0";
    $("conn").textContent = "reconnecting…";
  };
  const on = (name, fn) => es.addEventListener(name, (m) => { count(); fn(JSON.parse(m.data)); });
  on("snapshot", onSnapshot);
  on("window", (d) => {
    const c = card(d.stream);
    if (c.el.dataset.status !== "running") setStatus(c, "running");
    c.points.push(d.point);
    const cut = d.point[0] - SPAN_S;
    while (c.points.length && c.points[0][0] < cut) c.points.shift();
    showLatest(c, d.latest, d.windows);
    scheduleDraw(c);
  });
  on("state", (d) => { const c = cards.get(d.stream); if (c) showSmoothed(c, d.smoothed); });
  on("reasoning", (d) => { const c = cards.get(d.stream); if (c) showReasoning(c, d.reasoning); });
  on("status", (d) => { const c = cards.get(d.stream); if (c) setStatus(c, d.status); });
  on("remove", (d) => remove(d.stream));
  on("event", addEvent);
  on("bye", () => {
    $("conn").textContent = "server stopped";
    document.body.dataset.connected = "0";
    es.close();
  });
}

setInterval(() => {
  for (const c of cards.values()) {
    if (!c.lastSeen) continue;
    const s = Math.round((Date.now() - c.lastSeen) / 1000);
    c.el.querySelector(".ago").textContent = s < 2 ? "now" : `${s} s ago`;
  }
}, 1000);
connect();
