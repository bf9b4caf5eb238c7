// The drawing page: a canvas (pointer events cover mouse, touch and pen), photo upload and drag-and-drop,
// and the answer from POST /v1/read drawn back as digits, probability bars and boxes over the input.
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad"), padBoxes = $("pad-boxes"), photo = $("photo");
const ctx = pad.getContext("2d");
const strokes = [];          // each stroke: {width, points: [[x, y], ...]} in canvas pixels
let current = null;          // the stroke being drawn
let autoTimer = 0;
let requestId = 0;           // answers to older requests are dropped

// ---- drawing ------------------------------------------------------------------------------------
function paintBackground() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
}

function drawStroke(s) {
  ctx.strokeStyle = "#111";
  ctx.fillStyle = "#111";
  ctx.lineWidth = s.width;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  if (s.points.length === 1) {  // a tap is a dot
    const [x, y] = s.points[0];
    ctx.beginPath();
    ctx.arc(x, y, s.width / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  ctx.beginPath();
  ctx.moveTo(...s.points[0]);
  for (const p of s.points.slice(1)) ctx.lineTo(...p);
  ctx.stroke();
}

function redraw() {
  paintBackground();
  strokes.forEach(drawStroke);
}

function canvasPoint(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}

pad.addEventListener("pointerdown", (e) => {
  if (e.button !== 0 && e.pointerType === "mouse") return;
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  clearTimeout(autoTimer);
  current = {width: Number($("pen").value), points: [canvasPoint(e)]};
  strokes.push(current);
  clearBoxes(padBoxes);
  drawStroke(current);
});

pad.addEventListener("pointermove", (e) => {
  if (!current) return;
  e.preventDefault();
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of events.length ? events : [e]) current.points.push(canvasPoint(ev));
  redraw();
});

function endStroke() {
  if (!current) return;
  current = null;
  if ($("auto").checked) autoTimer = setTimeout(readCanvas, 350);
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

$("pen").addEventListener("input", () => { $("pen-value").textContent = $("pen").value; });
$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", () => {
  strokes.length = 0;
  redraw();
  clearBoxes(padBoxes);
  showResult(null);
});
$("read").addEventListener("click", readCanvas);
$("single").addEventListener("change", () => { if (strokes.length) readCanvas(); });
document.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); undo(); }
});

function undo() {
  strokes.pop();
  redraw();
  clearBoxes(padBoxes);
  if (strokes.length) readCanvas(); else showResult(null);
}

// ---- photos -------------------------------------------------------------------------------------
const drop = $("drop");
$("file").addEventListener("change", () => { if ($("file").files[0]) readPhoto($("file").files[0]); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const file = e.dataTransfer.files[0];
  if (file) readPhoto(file);
});

let photoImage = null;   // the uploaded image, drawn under its boxes

async function readPhoto(file) {
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => { photoImage = img; drawPhoto(null); };
  img.onerror = () => { photoImage = null; $("photo-stage").hidden = true; };
  img.src = url;
  const result = await post(file, file.name || "photo");
  if (result && photoImage === img) drawPhoto(result);
}

function drawPhoto(result) {
  const img = photoImage;
  if (!img) return;
  const scale = Math.min(1, 640 / img.naturalWidth, 360 / img.naturalHeight);
  photo.width = Math.max(1, Math.round(img.naturalWidth * scale));
  photo.height = Math.max(1, Math.round(img.naturalHeight * scale));
  const c = photo.getContext("2d");
  c.drawImage(img, 0, 0, photo.width, photo.height);
  $("photo-stage").hidden = false;
  if (result) drawBoxes(c, result, scale);
}

// ---- talking to the API -------------------------------------------------------------------------
function readCanvas() {
  clearTimeout(autoTimer);
  if (!strokes.length) { showResult(null); return; }
  pad.toBlob(async (blob) => {
    const result = await post(blob, "canvas.png");
    if (result) {
      clearBoxes(padBoxes);
      drawBoxes(padBoxes.getContext("2d"), result, 1);
    }
  }, "image/png");
}

async function post(blob, name) {
  const id = ++requestId;
  const form = new FormData();
  form.append("image", blob, name);
  const query = $("single").checked ? "?single=true" : "";
  const headers = {};
  const key = sessionStorage.getItem("digitrec-api-key");
  if (key) headers["X-API-Key"] = key;
  $("error").textContent = "";
  document.body.classList.add("busy");
  try {
    const res = await fetch("/v1/read" + query, {method: "POST", body: form, headers});
    const body = await res.json().catch(() => ({error: `HTTP ${res.status}`}));
    if (id !== requestId) return null;
    if (!res.ok) {
      if (res.status === 401) $("api-key-row").hidden = false;
      showResult(null);
      $("error").textContent = `${res.status}: ${body.error || "request failed"}`;
      return null;
    }
    showResult(body);
    return body;
  } catch (err) {
    if (id === requestId) $("error").textContent = `could not reach the server: ${err}`;
    return null;
  } finally {
    if (id === requestId) document.body.classList.remove("busy");
  }
}

$("api-key-row").addEventListener("submit", (e) => e.preventDefault());
$("api-key").addEventListener("change", () => {
  sessionStorage.setItem("digitrec-api-key", $("api-key").value);
  $("error").textContent = "API key saved for this tab; read again.";
});

// ---- showing the answer -------------------------------------------------------------------------
function showResult(r) {
  const digits = $("digits");
  $("charts").replaceChildren();
  $("reason").textContent = "";
  if (!r) {
    digits.textContent = "\u00a0";
    digits.dataset.state = "empty";
    $("confidence").textContent = "";
    return;
  }
  digits.textContent = r.digits || "?";
  digits.dataset.state = r.digits ? "read" : "abstained";
  $("confidence").textContent = r.items.length ? `confidence ${(100 * r.confidence).toFixed(1)}%` : "";
  if (r.reason) $("reason").textContent = r.reason;
  r.items.forEach((item, i) => $("charts").append(chart(item, i)));
}

function chart(item, index) {
  const fig = document.createElement("figure");
  fig.className = "chart";
  const bars = document.createElement("div");
  bars.className = "bars";
  item.probs.forEach((p, d) => {
    const col = document.createElement("div");
    col.className = "col" + (d === item.digit ? " top" : "");
    col.title = `${d}: ${(100 * p).toFixed(1)}%`;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.height = `${Math.max(0.5, 100 * p)}%`;
    const label = document.createElement("span");
    label.textContent = d;
    col.append(bar, label);
    bars.append(col);
  });
  const cap = document.createElement("figcaption");
  cap.textContent = `#${index + 1}: ${item.digit} (${(100 * item.confidence).toFixed(1)}%)`;
  fig.append(bars, cap);
  return fig;
}

function clearBoxes(canvas) {
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
}

function drawBoxes(c, r, scale) {
  c.lineWidth = 2;
  c.font = "bold 16px system-ui, sans-serif";
  r.items.forEach((item, i) => {
    const [x, y, w, h] = item.box.map((v) => v * scale);
    const ok = r.digits !== "";  // green when the reading was accepted, orange when it abstained
    c.strokeStyle = c.fillStyle = ok ? "#0a7d32" : "#c2410c";
    c.strokeRect(x, y, w, h);
    c.fillText(`${item.digit}`, x + 2, Math.max(14, y - 4));
  });
}

redraw();
