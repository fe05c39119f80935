// Refreshes the status panel from /api/status and keeps the stream image alive.
"use strict";

const $ = (id) => document.getElementById(id);

// URLs of this page's folder without any user:password@ (a page opened as http://user:pw@host/ cannot
// fetch a relative URL: the browser refuses request URLs with credentials in them).
const BASE = new URL(".", location.origin + location.pathname).href;
const here = (path) => new URL(path, BASE).href;

function fmt(value, digits = 1) {
  return typeof value === "number" ? value.toFixed(digits) : "–";
}

function duration(seconds) {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

function render(st) {
  const det = st.detector || {};
  const ladder = st.ladder || {};
  const rungs = (ladder.models || []).length;
  const rung = rungs > 1 ? ` · rung ${ladder.position + 1}/${rungs}` : "";
  $("model").textContent = det.model ? `${det.model} (α ${det.alpha ?? "?"})${rung}` : "–";
  const last = (ladder.switches || []).slice(-1)[0];
  $("switch").textContent = last
    ? `${new Date(last.time * 1000).toLocaleTimeString()}: ${last.from} → ${last.to} (${last.reason})`
    : "none";
  $("device").textContent = det.device === "edgetpu" ? "Edge TPU" : (det.device || "–").toUpperCase();
  const src = st.source || {};
  $("source").textContent = `${src.name || ""} · ${src.state || "?"} · ${fmt(src.fps)} fps` +
    (src.reason && src.state !== "live" ? ` (${src.reason})` : "");
  const inf = st.inference || {};
  $("inference").textContent = `${fmt(inf.fps)} fps · ${fmt(inf.ms, 0)} ms`;
  const stream = st.stream || {};
  $("streaminfo").textContent = `${stream.clients ?? 0} viewer(s) · ${fmt(stream.fps)} fps`;
  $("uptime").textContent = duration(st.uptime_s || 0);

  const badge = $("state");
  badge.textContent = src.state || "?";
  badge.className = `badge ${src.state === "live" ? "ok" : "bad"}`;

  const counts = {};
  for (const t of st.tracks || []) counts[t.label] = (counts[t.label] || 0) + 1;
  const list = $("objects");
  list.replaceChildren();
  const labels = Object.keys(counts).sort();
  if (!labels.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "none";
    list.append(li);
  }
  for (const label of labels) {
    const li = document.createElement("li");
    li.textContent = `${label}: ${counts[label]}`;
    list.append(li);
  }

  const ev = st.events || {};
  const areas = $("areas");
  areas.replaceChildren();
  for (const z of ev.zones || []) {
    const li = document.createElement("li");
    li.textContent = `${z.name}: ${z.occupancy} inside`;
    areas.append(li);
  }
  for (const l of ev.lines || []) {
    const li = document.createElement("li");
    li.textContent = `${l.name}: in ${l.in} · out ${l.out}`;
    areas.append(li);
  }
  if (!areas.children.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "none configured";
    areas.append(li);
  }
  const m = ev.mqtt;
  $("mqtt").textContent = !m ? "off" : `${m.connected ? "connected" : "offline"} · queue ${m.queue} · dropped ${m.dropped}`;

  const motion = st.motion;
  $("motion").textContent = !motion || motion.state === "off" ? "gating off: the detector runs on every frame"
    : `${motion.state} · detector skipped ${motion.skipped_frames ?? 0} of ${(motion.skipped_frames ?? 0) + (motion.detected_frames ?? 0)} frames` +
      (motion.last_motion ? ` · last motion ${new Date(motion.last_motion).toLocaleTimeString()}` : "");
  $("ladder-warning").hidden = !ladder.warning;
  $("ladder-warning").textContent = ladder.warning || "";
  knownZones = (ev.zones || []).map((z) => z.name);

  const config = st.config || {};
  $("config-error").hidden = !config.error;
  $("config-error").textContent = config.error ? `Config not applied (the running config stays): ${config.error}` : "";
  const pending = config.pending_restart || [];
  $("config-pending").hidden = !pending.length;
  $("config-pending").textContent = pending.length ? `Restart edgecam to apply: ${pending.join(", ")}` : "";
}

async function refresh() {
  try {
    const response = await fetch(here("api/status"), { cache: "no-store", credentials: "same-origin" });
    if (response.ok) render(await response.json());
  } catch (err) {
    $("state").textContent = "offline";
    $("state").className = "badge bad";
  }
}

// A dropped MJPEG connection (restart, network blip) is re-opened instead of leaving a frozen picture.
$("stream").addEventListener("error", () => {
  setTimeout(() => { $("stream").src = here(`stream.mjpg?t=${Date.now()}`); }, 2000);
});

// The img's relative src carries the page's user:password@ too, which browsers block for subresources.
if (location.username || location.password) $("stream").src = here("stream.mjpg");

// ---- events: what happened while you were away ------------------------------------------------------------

let knownZones = [];
const seenLabels = new Set();

function fillSelect(select, values, keep) {
  const current = select.value;
  const first = select.options[0];
  select.replaceChildren(first);
  for (const v of values) {
    const option = document.createElement("option");
    option.value = option.textContent = v;
    select.append(option);
  }
  select.value = keep && values.includes(current) ? current : "";
}

function eventQuery() {
  const q = new URLSearchParams({ limit: "60" });
  if ($("ev-label").value) q.set("label", $("ev-label").value);
  if ($("ev-zone").value) q.set("zone", $("ev-zone").value);
  const day = $("ev-day").value;  // local day → [midnight, next midnight) in UTC ISO
  if (day) {
    const start = new Date(`${day}T00:00:00`);
    q.set("since", start.toISOString());
    q.set("until", new Date(start.getTime() + 86400000).toISOString());
  }
  return q;
}

function play(ev) {
  const video = $("clip");
  video.src = here(ev.clip.replace(/^\//, ""));
  $("clip-caption").textContent = `${ev.label} · ${new Date(ev.start).toLocaleString()}`;
  $("player").showModal();
  video.play().catch(() => {});  // autoplay may be refused; the controls are there
}

function renderEvents(data) {
  const list = $("events");
  list.replaceChildren();
  for (const ev of data.events) {
    seenLabels.add(ev.label);
    const li = document.createElement("li");
    li.className = ev.clip ? "event" : "event noclip";
    li.dataset.id = ev.id;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = ev.label;
    if (ev.snapshot) img.src = here(ev.snapshot.replace(/^\//, ""));
    const meta = document.createElement("div");
    meta.className = "meta";
    const start = new Date(ev.start);
    const seconds = ev.end ? (new Date(ev.end) - start) / 1000 : null;
    const label = document.createElement("b");
    label.textContent = ev.label;
    meta.append(label, ` · ${start.toLocaleTimeString()}`,
      seconds === null ? " · now" : ` · ${duration(seconds)}`,
      ev.zones && ev.zones.length ? ` · ${ev.zones.join(", ")}` : "",
      ev.clip ? "" : (ev.end ? " · no clip" : " · recording…"));
    li.append(img, meta);
    if (ev.clip) li.addEventListener("click", () => play(ev));
    list.append(li);
  }
  $("events-info").textContent = data.total
    ? `${data.events.length} of ${data.total} event(s), newest first${data.total > data.events.length ? " (narrow the filters to see older ones)" : ""}`
    : "no events yet";
  fillSelect($("ev-label"), [...seenLabels].sort(), true);
  fillSelect($("ev-zone"), knownZones, true);
}

async function refreshEvents() {
  try {
    const response = await fetch(here(`api/events?${eventQuery()}`), { cache: "no-store", credentials: "same-origin" });
    if (response.ok) renderEvents(await response.json());
    else $("events-info").textContent = `events unavailable (${response.status})`;
  } catch (err) {
    $("events-info").textContent = "events unavailable (offline)";
  }
}

$("event-filters").addEventListener("change", refreshEvents);
$("player").addEventListener("close", () => { $("clip").pause(); $("clip").removeAttribute("src"); });

refresh();
setInterval(refresh, 1000);
refreshEvents();
setInterval(refreshEvents, 10000);
