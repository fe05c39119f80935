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

refresh();
setInterval(refresh, 1000);
