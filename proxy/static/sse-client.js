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
// or onEvent(type, payload) for any named event (tool_call_delta, say).

/** An error answer from the proxy before any stream started (4xx/5xx with a JSON body). */
export class ProxyHttpError extends Error {
  constructor(status, type, message) {
    super(message);
    this.name = "ProxyHttpError";
    this.status = status;
    this.type = type;
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
  url, body, signal, headers = {},
  onText = () => {}, onReasoning = () => {}, onToolCall = () => {}, onRefusal = () => {}, onEvent = () => {},
  onDone = () => {}, onError = () => {},
}) {
  const named = { reasoning: (p) => onReasoning(p.text), tool_call: onToolCall, refusal: (p) => onRefusal(p.text) };
  let finished = false;
  const finish = (callback, value) => {
    if (finished) return;
    finished = true;
    callback(value);
  };
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream", ...headers },
      body: JSON.stringify(body),
      signal,
    });
    if (!response.ok) return finish(onError, await httpError(response));
    await readEvents(response.body, (payload, type) => {
      if (finished) return;
      if (type !== "message") {
        named[type]?.(payload); // answer text is never a named event
        onEvent(type, payload);
      } else if (payload.action === "terminate") finish(onDone, payload);
      else if (typeof payload.text === "string") onText(payload.text);
    });
    finish(onError, new Error("the stream ended before the answer was finished"));
  } catch (err) {
    finish(onError, err); // a network error, an abort (err.name === "AbortError"), or bad event data
  }
}

async function readEvents(stream, onPayload) {
  // ignoreBOM: keep the BOM for the parser, which drops exactly one, as the spec says.
  const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  const parser = createParser({ onEvent: (event) => onPayload(JSON.parse(event.data), event.type) });
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
  return new ProxyHttpError(response.status, error.type || "http_error", message);
}
