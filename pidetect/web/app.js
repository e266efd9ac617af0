// The header every page shares: which page is open, this camera's name, and the other cameras of this Pi
// (/api/cameras), so one bookmark reaches them all. No framework, no build step.
"use strict";
(function () {
  const here = location.pathname === "/" ? "/" : "/" + location.pathname.split("/")[1];
  for (const link of document.querySelectorAll("header.app nav a")) {
    if (link.getAttribute("href") === here) link.setAttribute("aria-current", "page");
  }
  const slot = document.querySelector("header.app .camera");
  if (!slot) return;
  fetch("/api/cameras", {cache: "no-store"}).then(r => r.ok ? r.json() : []).then(cameras => {
    const me = cameras.find(c => c.this);
    if (!me) return;
    document.title = document.title + " · " + me.name;
    if (cameras.length < 2) { slot.textContent = "camera: " + me.name; return; }
    const label = document.createElement("label");
    label.textContent = "camera ";
    const select = document.createElement("select");
    select.setAttribute("aria-label", "camera");
    for (const camera of cameras) {
      const option = new Option(camera.name + (camera.up ? "" : " (off)"), String(camera.port));
      option.selected = camera.this;
      select.appendChild(option);
    }
    select.addEventListener("change", () => {
      location.href = location.protocol + "//" + location.hostname + ":" + select.value + location.pathname +
        location.search;
    });
    label.appendChild(select);
    slot.replaceChildren(label);
  }).catch(() => {});
})();
// shared helpers of the pages
function pdClock(seconds) { return new Date(seconds * 1000).toLocaleTimeString(); }
function pdWhen(seconds) { return new Date(seconds * 1000).toLocaleString(); }
function pdSince(seconds, now) {
  const s = Math.max(0, Math.round((now || Date.now() / 1000) - seconds));
  return s < 60 ? s + " s" : s < 3600 ? Math.floor(s / 60) + " min" : Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min";
}
function pdText(tag, className, content) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (content !== undefined) node.textContent = content;
  return node;
}
