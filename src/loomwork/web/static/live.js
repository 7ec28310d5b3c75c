// Live trees: the open tree's events as they happen (server-sent events, resumed by the browser with
// Last-Event-ID after a dropped connection or a server restart), and where this tab is, so others see it.
// It renders nothing: the entry module (main.js) decides what a change or a presence means for the page.
import { who } from "./api.js";

const PRESENCE_EVERY_MS = 8000; // the server forgets a tab after 20 s without word
let source = null, beat = null, where = null;
const client = sessionStorage.getItem("loomwork.client") || Math.random().toString(36).slice(2, 12);
sessionStorage.setItem("loomwork.client", client);

// Follow a tree's events after `after` (the version the page has); calls on.change(event), on.presence(list),
// on.deleted(), and on.reset(version) when the tree's numbers started again (a restored backup). One tree at a time: following another closes the first.
export function follow(treeId, after, on) {
  stop();
  source = new EventSource(`/api/trees/${encodeURIComponent(treeId)}/events?after=${after}`);
  source.addEventListener("change", (e) => on.change(JSON.parse(e.data)));
  source.addEventListener("presence", (e) => on.presence(JSON.parse(e.data).here));
  source.addEventListener("deleted", () => { stop(); on.deleted(); });
  source.addEventListener("reset", (e) => on.reset(JSON.parse(e.data).version));
  where = { treeId, nodeId: null };
  beat = setInterval(() => say(), PRESENCE_EVERY_MS);
}

export function stop() {
  if (source) source.close();
  clearInterval(beat);
  if (where && where.nodeId) say(null);
  source = null; beat = null; where = null;
}

// This tab is at `nodeId` now (null: it left the tree).
export function here(nodeId) {
  if (!where || where.nodeId === nodeId) return;
  where.nodeId = nodeId;
  say();
}

function say(nodeId = where && where.nodeId) {
  if (!where) return;
  const body = { client, node_id: nodeId };
  // keepalive: the word that a tab left still goes out as the page unloads
  fetch(`/api/trees/${encodeURIComponent(where.treeId)}/presence`, {
    method: "POST", keepalive: true, headers: { "Content-Type": "application/json", ...who() }, body: JSON.stringify(body),
  }).catch(() => {});
}

window.addEventListener("pagehide", () => { if (where) say(null); });
