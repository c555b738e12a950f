// serkit web page: upload or record audio, show emotion probabilities (bar chart) and, for long
// audio, a timeline. Plain JS and <canvas>, no libraries, nothing loaded from outside this server.
"use strict";

const LONG_AUDIO_S = 8;        // above this, also ask /v1/timeline for the emotion over time
const TIMELINE = { window: 4, hop: 2 };
const STREAM = { window: 2, hop: 1 };
const COLORS = {
  angry: "#d64545", anger: "#d64545", happy: "#f2a31b", happiness: "#f2a31b", joy: "#f2a31b",
  sad: "#3b6fd4", sadness: "#3b6fd4", neutral: "#8a93a3", calm: "#2aa198", fear: "#8e5bd0",
  fearful: "#8e5bd0", disgust: "#3f9b4f", boredom: "#9c6b3f", surprise: "#e0569b", surprised: "#e0569b",
};
const PALETTE = ["#d64545", "#f2a31b", "#3b6fd4", "#8a93a3", "#8e5bd0", "#3f9b4f", "#9c6b3f", "#e0569b", "#2aa198"];

const $ = (id) => document.getElementById(id);
let labels = [];
let apiKey = sessionStorage.getItem("serkit-api-key") || "";

function color(label, i) { return COLORS[label] || PALETTE[i % PALETTE.length]; }

function headers() { return apiKey ? { "X-API-Key": apiKey } : {}; }

function setStatus(text) { $("status").textContent = text || ""; }

function showError(text) {
  const el = $("error");
  el.textContent = text || "";
  el.hidden = !text;
  document.body.dataset.state = text ? "error" : document.body.dataset.state;
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (res.status === 401) $("auth").hidden = false;
  if (!res.ok) {
    const detail = body && body.detail;
    const msg = typeof detail === "string" ? detail : (detail ? JSON.stringify(detail) : res.statusText);
    throw new Error(`${res.status}: ${msg}`);
  }
  return body;
}

async function loadModel() {
  try {
    const m = await api("/v1/models");
    labels = m.labels;
    const recipe = (m.recipe && m.recipe.name) || m.family || "model";
    const ua = m.metrics && (m.metrics.ua ?? (m.metrics.loso && m.metrics.loso.ua));
    $("model-info").textContent =
      `model: ${recipe} · labels: ${labels.join(", ")}` + (typeof ua === "number" ? ` · UA ${ua.toFixed(3)}` : "") +
      ` · up to ${m.limits.max_upload_mb} MB / ${m.limits.max_duration_s} s per file`;
    $("auth").hidden = true;
  } catch (e) {
    $("model-info").textContent = "model not available";
    showError(e.message);
  }
}

// -- charts ------------------------------------------------------------------------------------------
function prepare(canvas, cssHeight) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 640;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(cssHeight * dpr);
  canvas.style.height = cssHeight + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, cssHeight);
  ctx.font = "13px system-ui, sans-serif";
  return { ctx, w, h: cssHeight };
}

function drawBars(probabilities) {
  const canvas = $("bars");
  const names = labels.length ? labels : Object.keys(probabilities);
  const rowH = 30;
  const { ctx, w } = prepare(canvas, names.length * rowH + 10);
  const left = 90, right = 60, barW = w - left - right;
  const best = names.reduce((a, b) => ((probabilities[b] || 0) > (probabilities[a] || 0) ? b : a), names[0]);
  names.forEach((name, i) => {
    const p = probabilities[name] || 0;
    const y = 5 + i * rowH;
    ctx.fillStyle = "#1d2430";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    ctx.font = (name === best ? "bold " : "") + "13px system-ui, sans-serif";
    ctx.fillText(name, left - 10, y + rowH / 2);
    ctx.fillStyle = "#eef0f4";
    ctx.fillRect(left, y + 5, barW, rowH - 10);
    ctx.fillStyle = color(name, i);
    ctx.fillRect(left, y + 5, Math.max(1, barW * p), rowH - 10);
    ctx.fillStyle = "#1d2430";
    ctx.textAlign = "left";
    ctx.fillText((100 * p).toFixed(1) + " %", left + barW + 8, y + rowH / 2);
  });
  canvas.dataset.rendered = names.map((n) => `${n}=${(probabilities[n] || 0).toFixed(3)}`).join(",");
}

function drawTimeline(windows, duration) {
  const canvas = $("timeline");
  const { ctx, w, h } = prepare(canvas, 240);
  const left = 40, right = 10, top = 10, bottom = 44;
  const pw = w - left - right, ph = h - top - bottom;
  const total = Math.max(duration || 0, ...windows.map((x) => x.end || 0), 1e-3);
  const x = (t) => left + (pw * t) / total;
  const y = (p) => top + ph * (1 - p);
  // axes and grid
  ctx.strokeStyle = "#e3e6eb";
  ctx.fillStyle = "#6b7380";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    ctx.beginPath(); ctx.moveTo(left, y(p)); ctx.lineTo(left + pw, y(p)); ctx.stroke();
    ctx.fillText(p.toFixed(2), left - 6, y(p));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const step = total > 60 ? 10 : total > 20 ? 5 : total > 8 ? 2 : 1;
  for (let t = 0; t <= total + 1e-6; t += step) ctx.fillText(t + " s", x(t), top + ph + 22);
  const valid = windows.filter((v) => v.label);
  // one line per label through the window centres
  labels.forEach((name, i) => {
    ctx.strokeStyle = color(name, i);
    ctx.lineWidth = 2;
    ctx.beginPath();
    valid.forEach((v, k) => {
      const cx = x((v.start + v.end) / 2), cy = y(v.probabilities[name] || 0);
      if (k === 0) ctx.moveTo(cx, cy); else ctx.lineTo(cx, cy);
    });
    ctx.stroke();
    if (valid.length === 1) {
      ctx.fillStyle = color(name, i);
      ctx.beginPath(); ctx.arc(x((valid[0].start + valid[0].end) / 2), y(valid[0].probabilities[name] || 0), 3, 0, 7); ctx.fill();
    }
  });
  // strip under the plot: the winning label of each window (grey hatch for silence)
  windows.forEach((v) => {
    const i = labels.indexOf(v.label);
    ctx.fillStyle = v.label ? color(v.label, i) : "#d9dce2";
    ctx.fillRect(x(v.start), top + ph + 6, Math.max(1, x(v.end) - x(v.start)), 10);
  });
  ctx.lineWidth = 1;
  $("legend").innerHTML = "";
  labels.forEach((name, i) => {
    const span = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.background = color(name, i);
    span.append(sw, document.createTextNode(name));
    $("legend").append(span);
  });
  $("timeline-block").hidden = false;
  canvas.dataset.rendered = String(windows.length);
}

function showResult(file, label, probabilities) {
  $("result").hidden = false;
  $("result-file").textContent = file ? `· ${file}` : "";
  $("label").textContent = label || "—";
  const p = probabilities && label ? probabilities[label] : null;
  $("confidence").textContent = typeof p === "number" ? `${(100 * p).toFixed(0)} %` : "";
  drawBars(probabilities || {});
}

// -- upload ------------------------------------------------------------------------------------------
async function analyse(blob, name) {
  showError("");
  document.body.dataset.state = "busy";
  $("analyse").disabled = true;
  $("timeline-block").hidden = true;
  setStatus(`analysing ${name}…`);
  try {
    const form = new FormData();
    form.append("file", blob, name);
    const r = await api("/v1/predict", { method: "POST", body: form });
    showResult(r.file, r.label, r.probabilities);
    setStatus(`${r.duration.toFixed(1)} s of audio`);
    if (r.duration > LONG_AUDIO_S) {
      setStatus(`${r.duration.toFixed(1)} s of audio · computing the timeline…`);
      const again = new FormData();
      again.append("file", blob, name);
      const t = await api(`/v1/timeline?window=${TIMELINE.window}&hop=${TIMELINE.hop}`, { method: "POST", body: again });
      drawTimeline(t.windows, t.duration);
      setStatus(`${r.duration.toFixed(1)} s of audio · ${t.windows.length} windows of ${t.window} s`);
    }
    document.body.dataset.state = "done";
  } catch (e) {
    setStatus("");
    showError(e.message);
  } finally {
    $("analyse").disabled = !$("file").files.length;
  }
}

$("file").addEventListener("change", () => {
  const f = $("file").files[0];
  $("file-name").textContent = f ? `${f.name} (${(f.size / 1048576).toFixed(2)} MB)` : "wav, flac, ogg or mp3";
  $("analyse").disabled = !f;
});
$("analyse").addEventListener("click", () => {
  const f = $("file").files[0];
  if (f) analyse(f, f.name);
});
$("save-key").addEventListener("click", () => {
  apiKey = $("api-key").value.trim();
  sessionStorage.setItem("serkit-api-key", apiKey);
  showError("");
  loadModel();
});

// -- microphone ----------------------------------------------------------------------------------------
let rec = null;

function encodeWav(chunks, rate) {
  // 16-bit PCM mono WAV: the browser's MediaRecorder gives webm/opus, which the server cannot decode
  const n = chunks.reduce((s, c) => s + c.length, 0);
  const buf = new ArrayBuffer(44 + 2 * n);
  const v = new DataView(buf);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + 2 * n, true); str(8, "WAVE"); str(12, "fmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  str(36, "data"); v.setUint32(40, 2 * n, true);
  let o = 44;
  for (const c of chunks) for (let i = 0; i < c.length; i++, o += 2) {
    const s = Math.max(-1, Math.min(1, c[i]));
    v.setInt16(o, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([buf], { type: "audio/wav" });
}

async function startRecording() {
  showError("");
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false } });
  } catch (e) {
    showError(`cannot open the microphone (${e.message}); allow microphone access for this page`);
    return;
  }
  const ctx = new AudioContext();
  const source = ctx.createMediaStreamSource(media);
  const node = ctx.createScriptProcessor(4096, 1, 1);
  const chunks = [], live = [];
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const q = new URLSearchParams({ rate: String(ctx.sampleRate), format: "f32", window: STREAM.window, hop: STREAM.hop });
  if (apiKey) q.set("api_key", apiKey);
  const ws = new WebSocket(`${proto}://${location.host}/v1/stream?${q}`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === "window") {
      live.push(m);
      if (m.label) showResult("live", m.label, m.probabilities);
      drawTimeline(live, m.end);
    } else if (m.type === "error") {
      showError(m.message);
    }
  };
  node.onaudioprocess = (ev) => {
    const data = new Float32Array(ev.inputBuffer.getChannelData(0));
    chunks.push(data);
    if (ws.readyState === WebSocket.OPEN) ws.send(data.buffer);
  };
  source.connect(node);
  node.connect(ctx.destination);
  rec = { media, ctx, node, source, chunks, ws, started: performance.now() };
  $("record").textContent = "■ Stop";
  $("record").classList.add("recording");
  $("record-status").textContent = "recording…";
}

async function stopRecording() {
  const r = rec;
  rec = null;
  r.node.disconnect(); r.source.disconnect();
  r.media.getTracks().forEach((t) => t.stop());
  if (r.ws.readyState === WebSocket.OPEN) r.ws.send(JSON.stringify({ type: "end" }));
  const rate = r.ctx.sampleRate;
  await r.ctx.close();
  $("record").textContent = "● Record";
  $("record").classList.remove("recording");
  const seconds = r.chunks.reduce((s, c) => s + c.length, 0) / rate;
  $("record-status").textContent = `recorded ${seconds.toFixed(1)} s`;
  await analyse(encodeWav(r.chunks, rate), "recording.wav");
}

$("record").addEventListener("click", () => (rec ? stopRecording() : startRecording()));
if (!navigator.mediaDevices || !window.AudioContext) {
  $("record").disabled = true;
  $("record-status").textContent = "recording needs a browser with microphone access over https or localhost";
}

loadModel();
