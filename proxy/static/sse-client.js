// sse-client.js: POST a chat to llm-sse-proxy with fetch and read the reply as it streams.
// No dependencies; works in browsers and in Node 18+. MIT.
//
//   import { streamChat } from "/static/sse-client.js";
//   const stop = new AbortController();
//   await streamChat({
//     url: "/chat",
//     body: { messages: [{ role: "user", content: "Hi!" }] },
//     signal: stop.signal,
//     onText: (text) => { reply.textContent += text; },
//     onDone: (terminate) => { if (terminate.reason === "error") show(terminate.error.message); },
//     onError: (err) => { if (err.name !== "AbortError") show(err.message); },
//   });
//
// Exactly one of onDone and onError is called, then the returned promise resolves.
//
// Reasoning, tool calls and refusals are opt-in named events: ask for them in the body, e.g.
// `body: { messages, events: ["reasoning", "tool_call"] }`, and pass onReasoning(text),
// onToolCall({index, id, name, arguments}) (arguments: the JSON text the model wrote), onRefusal(text),
// or onNamedEvent(type, payload) for any named event (tool_call_delta, say).
//
// Mid-stream recovery by restart (the proxy's `recovery: restart`): ask for `events: ["reset"]` and pass
// onReset({reason, model}). It means: discard everything this answer showed so far (text, reasoning,
// tool calls); the answer starts over with the events that follow.
//
// Resumable streams (the proxy's default): when the connection is cut mid-answer, it reconnects to
// GET streams/<id> with Last-Event-ID and goes on from the last event it got, at most `retries`
// times in a row, so the answer arrives whole and once. An abort is a deliberate stop: it also tells
// the proxy (POST streams/<id>/stop), which cancels the answer upstream at once.

/** An error answer from the proxy before any stream started (4xx/5xx with a JSON body). */
export class ProxyHttpError extends Error {
  constructor(status, type, message, retryAfter = null) {
    super(message);
    this.name = "ProxyHttpError";
    this.status = status;
    this.type = type;
    this.retryAfter = retryAfter; // seconds, from Retry-After on a 429 or 503; null without one
  }
}

/**
 * A streaming event-stream parser (WHATWG HTML, "Server-sent events", parsing an event stream).
 * Feed it decoded text in chunks of any size; it calls onEvent({type, data, id}) per dispatched
 * event. Lines may end in CR, LF or CRLF, split anywhere across chunks. One leading BOM is
 * dropped, comments go to onComment, and an event without its closing blank line is never sent.
 */
export function createParser({ onEvent, onComment = () => {}, onRetry = () => {} }) {
  let started = false;
  let pending = ""; // the start of a line whose end has not arrived yet
  let skipLF = false; // the last chunk ended in CR: a LF opening the next one ends no new line
  let data = [];
  let type = "";
  let lastId = "";

  function dispatch() {
    if (data.length > 0) onEvent({ type: type || "message", data: data.join("\n"), id: lastId });
    data = [];
    type = "";
  }

  function processLine(line) {
    if (line === "") return dispatch();
    if (line.startsWith(":")) return onComment(line.slice(1));
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") data.push(value);
    else if (name === "event") type = value;
    else if (name === "id" && !value.includes("\0")) lastId = value;
    else if (name === "retry" && /^[0-9]+$/.test(value)) onRetry(Number(value));
  }

  function feed(chunk) {
    if (!chunk) return;
    if (!started) {
      started = true;
      if (chunk.startsWith("\uFEFF")) chunk = chunk.slice(1);
    }
    if (skipLF && chunk.startsWith("\n")) chunk = chunk.slice(1);
    skipLF = false;
    const text = pending + chunk;
    const lineEnd = /\r\n|\r|\n/g;
    lineEnd.lastIndex = pending.length; // `pending` holds no line end: skip rescanning it
    let start = 0;
    for (let match; (match = lineEnd.exec(text)) !== null; start = lineEnd.lastIndex) {
      processLine(text.slice(start, match.index));
      if (match[0] === "\r" && lineEnd.lastIndex === text.length) skipLF = true;
    }
    pending = text.slice(start);
  }

  function reset() {
    started = false;
    pending = "";
    skipLF = false;
    data = [];
    type = "";
    lastId = "";
  }

  return { feed, reset };
}

/** POST `body` as JSON to the proxy and stream the reply into the callbacks. */
export async function streamChat({
  url, body, signal, headers = {}, retries = 8,
  onText = () => {}, onReasoning = () => {}, onToolCall = () => {}, onRefusal = () => {}, onReset = () => {},
  onNamedEvent = () => {}, onDone = () => {}, onError = () => {},
}) {
  const named = {
    reasoning: (p) => onReasoning(p.text), tool_call: onToolCall, refusal: (p) => onRefusal(p.text), reset: onReset,
  };
  let finished = false;
  const finish = (callback, value) => {
    if (finished) return;
    finished = true;
    callback(value);
  };
  const stream = { id: null, seq: 0 }; // the proxy's stream id, and the last event applied
  const onEvent = (event) => {
    if (finished) return;
    const seq = seqOf(event.id, stream.id);
    if (seq !== null) {
      if (seq <= stream.seq) return; // already applied: a replay never shows text twice
      stream.seq = seq;
    }
    const payload = JSON.parse(event.data);
    if (event.type !== "message") {
      named[event.type]?.(payload); // answer text is never a named event
      onNamedEvent(event.type, payload);
    } else if (payload.action === "terminate") finish(onDone, payload);
    else if (typeof payload.text === "string") onText(payload.text);
  };
  const stop = () => {
    if (finished || stream.id === null) return;
    fetch(streamUrl(url, stream.id, "/stop"), { method: "POST", headers, keepalive: true }).catch(() => {});
  };
  signal?.addEventListener("abort", stop, { once: true });
  try {
    let response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream", ...headers },
      body: JSON.stringify(body),
      signal,
    });
    if (!response.ok) return finish(onError, await httpError(response));
    stream.id = response.headers.get("x-stream-id");
    for (let attempt = 0; ; attempt += 1) {
      const before = stream.seq;
      if (response !== null) await readUnlessCut(response.body, onEvent, stream.id !== null);
      if (finished) return;
      if (stream.id === null || attempt >= retries) break;
      if (stream.seq > before) attempt = 0; // it was making progress: a new cut, not a failing reconnect
      await sleep(Math.min(250 * 2 ** attempt, 4000), signal);
      response = await reconnect(url, stream, headers, signal);
      if (response?.status === 204) break; // the proxy no longer has this stream
      if (response !== null && !response.ok) return finish(onError, await httpError(response));
    }
    finish(onError, new Error("the stream ended before the answer was finished"));
  } catch (err) {
    finish(onError, err); // a network error, an abort (err.name === "AbortError"), or bad event data
  } finally {
    signal?.removeEventListener("abort", stop);
  }
}

/** The seq of an event id `<stream id>:<seq>` of this stream, or null. */
function seqOf(id, streamId) {
  if (streamId === null || !id.startsWith(`${streamId}:`)) return null;
  const seq = id.slice(streamId.length + 1);
  return /^[0-9]+$/.test(seq) ? Number(seq) : null;
}

function streamUrl(chatUrl, id, tail = "") {
  const base = new URL(chatUrl, globalThis.location?.href); // "chat" -> "streams/<id>" beside it
  return new URL(`streams/${encodeURIComponent(id)}${tail}`, base).href;
}

/** GET the rest of the stream; null when the network fails again (the caller retries). */
async function reconnect(url, stream, headers, signal) {
  const resumeHeaders = { ...headers, accept: "text/event-stream", "last-event-id": `${stream.id}:${stream.seq}` };
  try {
    return await fetch(streamUrl(url, stream.id), { headers: resumeHeaders, signal });
  } catch (err) {
    if (err instanceof TypeError) return null;
    throw err;
  }
}

/** Read events until the body ends; a cut connection (a TypeError) ends it too when it can resume. */
async function readUnlessCut(body, onEvent, resumable) {
  try {
    await readEvents(body, onEvent);
  } catch (err) {
    if (!(resumable && err instanceof TypeError)) throw err;
  }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason ?? new DOMException("aborted", "AbortError"));
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason ?? new DOMException("aborted", "AbortError"));
    }, { once: true });
  });
}

async function readEvents(stream, onEvent) {
  // ignoreBOM: keep the BOM for the parser, which drops exactly one, as the spec says.
  const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  const parser = createParser({ onEvent });
  const reader = stream.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
    }
    parser.feed(decoder.decode());
  } catch (err) {
    reader.cancel().catch(() => {}); // bad data or a throwing callback: let the connection go
    throw err;
  }
}

async function httpError(response) {
  let error = {};
  try {
    error = (await response.json()).error ?? {};
  } catch {
    // not the proxy's JSON: a gateway's HTML page, say; the status still tells what happened
  }
  const message = error.message || `the proxy answered HTTP ${response.status}`;
  return new ProxyHttpError(response.status, error.type || "http_error", message, retryAfterOf(response));
}

/** Retry-After in seconds (its delta-seconds form, the one the proxy sends); null when absent or a date. */
export function retryAfterOf(response) {
  const value = response.headers.get("retry-after");
  return value !== null && /^\d+$/.test(value.trim()) ? Number(value) : null;
}
