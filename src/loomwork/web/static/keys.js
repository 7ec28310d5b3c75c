// The keys: one table drives both the dispatcher and the help dialog. Each entry: [keys, what it does, action].
// The keys a Loom user knows (parent, child, siblings, tree order, bookmarks, root, go to id) come first.

export const KEYS = [
  [["ArrowUp", "k"], "↑ / k", "parent", "parent"],
  [["ArrowDown", "j"], "↓ / j", "child (the one last visited)", "child"],
  [["ArrowLeft", "h"], "← / h", "previous sibling", "prevSibling"],
  [["ArrowRight", "l"], "→ / l", "next sibling", "nextSibling"],
  [[], "1 … 9", "go to child N", null],
  [["0"], "0", "pick among all the children (also beyond 9)", "pickChild"],
  [["]"], "]", "next node in tree order", "nextInOrder"],
  [["["], "[", "previous node in tree order", "prevInOrder"],
  [["}"], "}", "next bookmark", "nextBookmark"],
  [["{"], "{", "previous bookmark", "prevBookmark"],
  [["r", "Home"], "r / Home", "go to the root", "root"],
  [["i"], "i", "go to a node by id (or a prefix of 4+ characters)", "goToId"],
  [["PageDown", " "], "PgDn / Space", "scroll the read view down", "scrollDown"],
  [["PageUp"], "PgUp", "scroll the read view up", "scrollUp"],
  [["g"], "g", "generate children (settings on the right)", "generate"],
  [["Escape"], "Esc", "cancel generation / leave token mode / close", "escape"],
  [["w"], "w", "write at the end of the path (a child of this node)", "write"],
  [["e"], "e", "edit this node as a new sibling (copy-on-write; what follows stays under the original)", "edit"],
  [["E"], "Shift+E", "edit this node with what follows: the path below it is carried to the edited copy (the original stays)", "editCarry"],
  [["s"], "s", "split at the caret, or before the selected token", "split"],
  [["m"], "m", "merge with the only child", "merge"],
  [["b"], "b", "bookmark", "bookmark"],
  [["a"], "a", "archive / restore", "archive"],
  [["t"], "t", "tag (the tag box on the right)", "tag"],
  [["C"], "Shift+C", "name this node as a chapter start", "chapter"],
  [["c"], "c", "choose this node among its siblings (selection bits)", "choose"],
  [["u"], "u / Ctrl+Z", "undo", "undo"],
  [["U"], "Shift+U / Ctrl+Shift+Z", "redo", "redo"],
  [["/"], "/", "search (↑ ↓ Enter in the results)", "search"],
  [["<"], "<", "select the previous token (token mode: 1–9 branch with an alternative)", "prevToken"],
  [[">"], ">", "select the next token", "nextToken"],
  [["p"], "p", "shade tokens by probability", "shade"],
  [["o"], "o", "show archived nodes in the outline", "archived"],
  [["H"], "Shift+H", "hoist: show the subtree here as the whole tree (again: unhoist)", "hoist"],
  [["z"], "z", "fold the outline but for the current path", "collapseOthers"],
  [["Z"], "Shift+Z", "fold the outline but for the path and this node's children", "collapseAll"],
  [["v"], "v", "graph view of the tree", "graph"],
  [["n"], "n", "trees, new tree and this tree's settings", "trees"],
  [["x"], "x", "next-token distribution here", "next"],
  [["y"], "y", "probability-mass tree here", "massTree"],
  [["?"], "?", "this help", "help"],
];

const BY_KEY = new Map(KEYS.flatMap(([keys, , , action]) => keys.map((k) => [k, action])));

// The action for a key event, or null. Digits are children (or, in token mode, alternatives).
export function actionFor(event, tokenMode) {
  if (/^[1-9]$/.test(event.key)) return tokenMode ? ["pickAlternative", Number(event.key) - 1] : ["nth", Number(event.key) - 1];
  const name = BY_KEY.get(event.key);
  return name ? [name] : null;
}
