// Search: results walked with arrows and Enter, the match marked, where it is as the path's words. Enter typed
// before the results came waits for them, so it always opens a hit of what was typed.
import { api } from "./api.js";
import { clear, el } from "./dom.js";
import { go, guarded } from "./page.js";
import { state } from "./state.js";

const $ = (id) => document.getElementById(id);

let searchTimer = null, hits = [], active = 0;

function drawHits() {
  const box = clear($("search-results"));
  box.hidden = !$("search").value.trim();
  if (!hits.length) box.append(el("p", { class: "muted" }, "no match"));
  hits.forEach((hit, i) => {
    const text = hit.node.text, [a, b] = hit.match;
    const from = Math.max(0, a - 40), to = Math.min(text.length, b + 60);
    box.append(el("button", { class: `hit${i === active ? " active" : ""}`, role: "option", onclick: () => chooseHit(i) },
      el("span", { class: "muted trail" }, hit.trail.length ? `${hit.trail.length} deep · ${hit.trail.slice(-3).join(" › ")}` : "the root"), el("br"),
      (text.slice(0, from).trim() ? "…" : "") + text.slice(from, a), el("mark", {}, text.slice(a, b)),
      text.slice(b, to) + (text.slice(to).trim() ? "…" : ""))); // "…" only where words were left out
  });
  const cur = box.querySelector(".hit.active");
  if (cur) cur.scrollIntoView({ block: "nearest" });
}

function chooseHit(i) {
  const hit = hits[i];
  if (!hit) return;
  closeSearch();
  guarded(() => go(hit.node.id));
}

export function closeSearch() {
  $("search-results").hidden = true;
  $("search").blur();
}

let pending = null; // the search under way: Enter waits for it, so it never opens a hit of an older query

function runSearch() {
  clearTimeout(searchTimer);
  searchTimer = null;
  const q = $("search").value.trim();
  if (!q) { $("search-results").hidden = true; hits = []; return Promise.resolve(); }
  pending = api("GET", `/search?q=${encodeURIComponent(q)}${state.tree ? `&tree=${state.tree.id}` : ""}`).then((found) => {
    if ($("search").value.trim() !== q) return; // typed on meanwhile: the newer search draws
    hits = found;
    active = 0;
    drawHits();
  });
  return pending;
}

function onSearch() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => guarded(runSearch), 150);
}

function onSearchKey(e) {
  if (e.key === "ArrowDown" || e.key === "ArrowUp") {
    e.preventDefault();
    active = (active + (e.key === "ArrowDown" ? 1 : hits.length - 1)) % Math.max(hits.length, 1);
    drawHits();
  } else if (e.key === "Enter") {
    e.preventDefault();
    const ready = searchTimer ? runSearch() : pending || Promise.resolve(); // typed faster than the search ran
    guarded(async () => { await ready; chooseHit(active); });
  } else if (e.key === "Escape") {
    e.stopPropagation();
    closeSearch();
  }
}

// The search box's events, wired once at start.
export function wireSearch() {
  $("search").addEventListener("input", onSearch);
  $("search").addEventListener("keydown", onSearchKey);
  document.addEventListener("pointerdown", (e) => { // a click outside the results closes them
    if (!$("search-results").hidden && !e.target.closest("#search-results, #search")) $("search-results").hidden = true;
  });
}
