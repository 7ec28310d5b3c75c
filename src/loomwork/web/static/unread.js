// Unread markers: the nodes of the open tree this person has not opened yet (GET/POST /api/trees/ID/reads). A node
// counts as read once it is on the path the page shows; the page says so in a batch a moment later. Marking read
// changes nothing in the tree (no event, nothing to undo). Nodes that were there before the markers came count as
// read (docs/web.md).
import { api, who } from "./api.js";
import { state } from "./state.js";

const SEND_AFTER_MS = 400, MAX_BATCH = 500;
const pending = new Map(); // tree id -> ids shown but not yet told to the server
let timer = null;

export async function loadReads(treeId) {
  const { read } = await api("GET", `/trees/${encodeURIComponent(treeId)}/reads`);
  state.read = new Set(read);
}

// Whether the page should mark the node unread (not while the read set is still unknown).
export const isUnread = (node) => Boolean(state.read) && !state.read.has(node.id);

export function markShown(treeId, nodes) {
  if (!state.read) return;
  const fresh = nodes.filter((n) => !state.read.has(n.id));
  if (!fresh.length) return;
  if (!pending.has(treeId)) pending.set(treeId, new Set());
  for (const n of fresh) { state.read.add(n.id); pending.get(treeId).add(n.id); }
  if (!timer) timer = setTimeout(send, SEND_AFTER_MS);
}

// One batch to the server. A failure (the tree deleted meanwhile, the server gone) loses these marks: the nodes
// show as unread again after a reload. `keepalive`: the request outlives the page that sends it.
function post(treeId, ids, keepalive = false) {
  return fetch(`/api/trees/${encodeURIComponent(treeId)}/reads`, { method: "POST", keepalive,
    headers: { "Content-Type": "application/json", ...who() }, body: JSON.stringify({ nodes: ids }) }).catch(() => {});
}

async function send() {
  timer = null;
  const batches = [...pending];
  pending.clear();
  for (const [treeId, ids] of batches) {
    const all = [...ids];
    for (let i = 0; i < all.length; i += MAX_BATCH) await post(treeId, all.slice(i, i + MAX_BATCH));
  }
}

// Leaving the page (a reload, a link): what is still waiting goes at once, in requests that outlive the page.
addEventListener("pagehide", () => {
  clearTimeout(timer);
  timer = null;
  for (const [treeId, ids] of pending) post(treeId, [...ids].slice(0, MAX_BATCH), true);
  pending.clear();
});
