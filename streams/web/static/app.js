// affectstream live-call page: camera + mic → WebRTC → the engine; results come back on a data channel.
// Plain browser JavaScript, no build step. URL options: ?autostart=1, ?token=..., ?stream=NAME,
// ?consent=1 (ticks the consent box: for kiosks and tests where consent was recorded beforehand).
"use strict";

const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
const COLORS = {
  angry: "#ff6b6b", disgust: "#8bc34a", fear: "#b388ff", happy: "#ffd54f",
  sad: "#4fc3f7", surprise: "#ff9f43", neutral: "#b0bec5",
};
const HISTORY_S = 60; // seconds kept on the timeline
const MIN_SPAN_S = 15; // the narrowest time span drawn

const params = new URLSearchParams(location.search);
const token = params.get("token");
const $ = (id) => document.getElementById(id);

let pc = null;
let local = null;
let t0Unix = null;
const history = []; // {end, scores}
const state = { windows: 0 };
let consentRequired = false;

function setStatus(text, kind) {
  $("status").textContent = text;
  if (kind) document.body.dataset.state = kind;
}

function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function buildBars() {
  const bars = $("bars");
  const legend = $("legend");
  for (const e of EMOTIONS) {
    bars.insertAdjacentHTML(
      "beforeend",
      `<span class="name">${e}</span><span class="track"><span class="fill" id="bar-${e}"` +
        ` style="background:${COLORS[e]}"></span></span><span class="val" id="val-${e}">0.00</span>`,
    );
    legend.insertAdjacentHTML("beforeend", `<span><i style="background:${COLORS[e]}"></i>${e}</span>`);
  }
}

async function getMedia() {
  // Emotion cues live in the raw voice: no echo cancellation, gain control or noise suppression.
  const audio = { echoCancellation: false, autoGainControl: false, noiseSuppression: false };
  const video = { width: { ideal: 640 }, height: { ideal: 480 } };
  for (const c of [{ video, audio }, { audio }, { video }]) {
    try {
      return await navigator.mediaDevices.getUserMedia(c);
    } catch (e) {
      console.warn("getUserMedia", c, e);
    }
  }
  throw new Error("no camera or microphone available (or permission denied)");
}

function waitIceGathering(conn) {
  if (conn.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (conn.iceGatheringState === "complete") {
        conn.removeEventListener("icegatheringstatechange", done);
        resolve();
      }
    };
    conn.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000); // send what we have; the server does not trickle either
  });
}

async function start() {
  $("start").disabled = true;
  try {
    setStatus("asking for camera and microphone…", "connecting");
    local = await getMedia();
    const hasVideo = local.getVideoTracks().length > 0;
    $("preview").srcObject = hasVideo ? local : null;
    $("nocam").hidden = hasVideo;

    const cfgResp = await fetch("config", { headers: authHeaders() });
    if (!cfgResp.ok) throw new Error(`config: ${cfgResp.status} ${(await cfgResp.json()).error || ""}`);
    const cfg = await cfgResp.json();

    pc = new RTCPeerConnection({ iceServers: cfg.iceServers || [] });
    const dc = pc.createDataChannel("affectstream");
    dc.onmessage = (ev) => onMessage(JSON.parse(ev.data));
    for (const track of local.getTracks()) pc.addTrack(track, local);
    pc.onconnectionstatechange = () => {
      const s = pc && pc.connectionState;
      if (s === "connected") setStatus("live — analyzing", "live");
      else if (s === "failed" || s === "closed") stop(`call ${s}`);
      else if (s) setStatus(s, "connecting");
    };

    setStatus("connecting…", "connecting");
    await pc.setLocalDescription(await pc.createOffer());
    await waitIceGathering(pc);
    const body = { sdp: pc.localDescription.sdp, type: pc.localDescription.type, consent: $("consent").checked };
    if (params.get("stream")) body.stream = params.get("stream");
    const r = await fetch("offer", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify(body),
    });
    const ans = await r.json();
    if (!r.ok) throw new Error(`offer refused (${r.status}): ${ans.error || ""}`);
    document.body.dataset.stream = ans.stream;
    $("active").hidden = false;
    await pc.setRemoteDescription({ type: ans.type, sdp: ans.sdp });
    $("stop").disabled = false;
  } catch (e) {
    stop();
    setStatus(String(e.message || e), "error");
  }
}

function stop(reason) {
  if (pc) pc.close();
  pc = null;
  if (local) for (const t of local.getTracks()) t.stop();
  local = null;
  $("preview").srcObject = null;
  $("active").hidden = true;
  $("start").disabled = consentRequired && !$("consent").checked;
  $("stop").disabled = true;
  setStatus(reason || "stopped", "idle");
}

function onMessage(m) {
  const schema = String(m.schema || "");
  if (schema.startsWith("affectstream.webrtc.hello/")) {
    t0Unix = m.t0_unix;
    if (m.reasoning === false) $("reasoning").textContent = "reasoning is off on this server";
  } else if (schema.startsWith("affectstream.window/")) {
    onWindow(m);
  } else if (schema.startsWith("affectstream.state/")) {
    $("smoothed").textContent = `smoothed: ${m.label} ${Number(m.score).toFixed(2)}`;
  } else if (schema.startsWith("affectstream.reasoning/")) {
    const answer = m.valid ? m.answer : `${m.fallback_label || "?"} (fast label kept)`;
    const when = `window ${m.window.index}, ${(Number(m.latency_ms) / 1000).toFixed(1)} s, ${m.model}`;
    $("reasoning").textContent = `${m.think}\n→ ${answer}  (${when})`;
  } else if (schema.startsWith("affectstream.events/")) {
    const li = document.createElement("li");
    li.textContent = `${m.type} ${m.label} @ ${Number(m.start).toFixed(1)}s` + (m.end != null ? `–${Number(m.end).toFixed(1)}s` : "");
    $("events").prepend(li);
    while ($("events").children.length > 50) $("events").lastChild.remove();
  }
}

function onWindow(m) {
  state.windows += 1;
  document.body.dataset.windows = String(state.windows);
  document.body.dataset.label = m.label;
  $("label").textContent = m.label;
  $("score").textContent = Number(m.score).toFixed(2);
  for (const e of EMOTIONS) {
    const v = Number((m.scores || {})[e] || 0);
    $(`bar-${e}`).style.width = `${(v * 100).toFixed(1)}%`;
    $(`val-${e}`).textContent = v.toFixed(2);
  }
  const faces = (m.faces || []).length;
  const speech = m.voice && m.voice.speech ? "speech" : "no speech";
  let meta = `window ${m.window.index} · ${faces} face${faces === 1 ? "" : "s"} · ${speech}`;
  if (t0Unix != null) {
    // capture of the window's last moment → this message, on this machine's clock
    const lat = Date.now() / 1000 - (t0Unix + m.window.end);
    meta += ` · label latency ${(lat * 1000).toFixed(0)} ms`;
  }
  $("meta").textContent = meta;
  history.push({ end: m.window.end, scores: m.scores || {} });
  while (history.length && history[0].end < m.window.end - HISTORY_S) history.shift();
  drawTimeline();
}

function drawTimeline() {
  const c = $("timeline");
  const ctx = c.getContext("2d");
  const w = c.width;
  const h = c.height;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#24303c";
  ctx.lineWidth = 1;
  for (const y of [0.25, 0.5, 0.75]) {
    ctx.beginPath();
    ctx.moveTo(0, h * y);
    ctx.lineTo(w, h * y);
    ctx.stroke();
  }
  if (!history.length) return;
  // the visible span grows with the call up to HISTORY_S, then the chart scrolls
  const tEnd = history[history.length - 1].end;
  const span = Math.min(HISTORY_S, Math.max(MIN_SPAN_S, tEnd - history[0].end));
  const x = (t) => w - ((tEnd - t) / span) * w;
  ctx.lineWidth = 2;
  for (const e of EMOTIONS) {
    ctx.strokeStyle = COLORS[e];
    ctx.beginPath();
    history.forEach((p, i) => {
      const y = h - 4 - Number(p.scores[e] || 0) * (h - 8);
      if (i === 0) ctx.moveTo(x(p.end), y);
      else ctx.lineTo(x(p.end), y);
    });
    ctx.stroke();
  }
}

// The server's notice, and whether the caller must agree before a call can start (settings `privacy`).
async function loadPrivacy() {
  try {
    const r = await fetch("config", { headers: authHeaders() });
    if (!r.ok) return;
    const p = (await r.json()).privacy || {};
    if (p.notice) $("notice").textContent = p.notice;
    consentRequired = !!p.consent;
  } catch (e) {
    console.warn("config", e);
  }
  $("consent-row").hidden = !consentRequired;
  if (params.get("consent") === "1") $("consent").checked = true;
  $("start").disabled = consentRequired && !$("consent").checked;
  document.body.dataset.consent = consentRequired ? "required" : "not-required";
}

buildBars();
drawTimeline();
$("start").addEventListener("click", start);
$("stop").addEventListener("click", () => stop());
$("consent").addEventListener("change", () => {
  if (!pc) $("start").disabled = consentRequired && !$("consent").checked;
});
loadPrivacy().then(() => {
  if (params.get("autostart") === "1" && !$("start").disabled) start();
});
