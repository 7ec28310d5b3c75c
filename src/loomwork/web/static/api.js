// Talking to /api. Errors become Error objects carrying the server's one-line message.

// Who is acting: the server logs each operation under this name, and undo tells yours from other people's.
let user = null;
export function setUser(name) { user = name; }
export const who = () => (user ? { "X-Loomwork-User": user } : {});

export async function api(method, path, body) {
  const opts = { method, headers: who() };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch("/api" + path, opts);
  } catch (e) {
    throw new Error("the loomwork server cannot be reached (is it still running?)");
  }
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    const err = new Error((data && data.error) || `${method} ${path} failed with ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return data;
}

// A request answered with server-sent events; calls onEvent(name, data) for each. Abort with `signal`.
export async function stream(path, body, onEvent, signal, method = "POST") {
  const resp = await fetch("/api" + path, {
    method, headers: { "Content-Type": "application/json", ...who() }, signal,
    body: method === "GET" ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) {
    const data = await resp.json().catch(() => null);
    throw new Error((data && data.error) || `generation failed with ${resp.status}`);
  }
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      onEvent(name, data ? JSON.parse(data) : null);
    }
  }
}
