// Sibling hygiene for the options view (docs/web.md): near-duplicate options folded under the first of them, and
// the options ordered so that similar ones sit together (seriation). Pure functions over texts.

export const NEAR = 0.85; // character-trigram Jaccard similarity at or above which two options are near-duplicates

// The set of character trigrams of a text, whitespace and case normalised (so "The sea." and "the  sea." match).
function grams(text) {
  const t = ` ${text.toLowerCase().replace(/\s+/g, " ").trim()} `;
  const out = new Set();
  for (let i = 0; i + 3 <= t.length; i += 1) out.add(t.slice(i, i + 3));
  return out;
}

function jaccard(x, y) {
  if (!x.size && !y.size) return 1;
  let both = 0;
  for (const g of x) if (y.has(g)) both += 1;
  return both / (x.size + y.size - both);
}

// For each text, the index of the first earlier text it is a near-duplicate of (or -1): options are folded
// under the first of their kind, in their own order. Only texts of the same `groups` value fold together (the
// model that wrote them: two models saying the same thing is a finding, not clutter).
export function duplicateOf(texts, groups = [], threshold = NEAR) {
  const sets = texts.map(grams);
  const sim = (i, j) => jaccard(sets[i], sets[j]);
  const out = texts.map(() => -1);
  texts.forEach((_t, i) => {
    for (let j = 0; j < i; j += 1) {
      if (out[j] === -1 && groups[i] === groups[j] && sim(i, j) >= threshold) { out[i] = j; break; }
    }
  });
  return out;
}

// An order of the texts in which each is followed by the one most like it among those left (greedy nearest
// neighbour from the first): a quick seriation, so that kinds of options read together.
export function seriate(texts) {
  if (texts.length < 3) return texts.map((_t, i) => i);
  const sets = texts.map(grams);
  const left = new Set(texts.map((_t, i) => i));
  const order = [0];
  left.delete(0);
  while (left.size) {
    const last = sets[order[order.length - 1]];
    let best = -1, bestSim = -1;
    for (const j of left) {
      const s = jaccard(last, sets[j]);
      if (s > bestSim) { best = j; bestSim = s; }
    }
    order.push(best);
    left.delete(best);
  }
  return order;
}
