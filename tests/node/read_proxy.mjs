// Reads the proxy with clients that no one here wrote, and prints what each one got, as JSON.
//
// stdin: {"base": "http://127.0.0.1:PORT", "cases": [{"client", "model", "text", "events"?}, ...]}
// events: the opt-in named events to ask for (a list), for the eventsource and sse-client cases.
// stdout: [{"texts": [...], "ids": [...], "terminate": {...}} or {"error": "..."}, ...], in order.
// client: "eventsource" (the WHATWG EventSource for Node, GET /stream),
//         "eventsource-parser" (fetch POST /chat, parsed by eventsource-parser),
//         "sse-client" (this project's proxy/static/sse-client.js, POST /chat).
import { text as readAll } from "node:stream/consumers";

import { EventSource } from "eventsource";
import { createParser } from "eventsource-parser";

import { streamChat } from "../../proxy/static/sse-client.js";

const TIME_LIMIT_MS = 60_000;

function viaEventSource(base, { model, text, events = [] }) {
  return new Promise((resolve) => {
    const query = { prompt: text, model, ...(events.length ? { events: events.join(",") } : {}) };
    const source = new EventSource(`${base}/stream?${new URLSearchParams(query)}`);
    const got = { texts: [], ids: [] };
    source.addEventListener("message", (event) => {
      const payload = JSON.parse(event.data);
      got.ids.push(event.lastEventId);
      if (payload.action !== "terminate") return got.texts.push(payload.text);
      source.close();
      resolve({ ...got, terminate: payload });
    });
    source.addEventListener("error", (event) => {
      source.close();
      resolve({ ...got, error: `EventSource error: ${event.message ?? "no detail"}` });
    });
  });
}

async function viaEventSourceParser(base, { model, text }) {
  const response = await fetch(`${base}/chat`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: text }] }),
  });
  const got = { texts: [], ids: [] };
  const parser = createParser({
    onEvent(event) {
      const payload = JSON.parse(event.data);
      got.ids.push(event.id);
      if (payload.action === "terminate") got.terminate = payload;
      else got.texts.push(payload.text);
    },
  });
  const decoder = new TextDecoder();
  for await (const chunk of response.body) parser.feed(decoder.decode(chunk, { stream: true }));
  parser.feed(decoder.decode());
  return response.ok ? got : { error: `HTTP ${response.status}` };
}

async function viaSseClient(base, { model, text, events }) {
  const got = { texts: [] };
  await streamChat({
    url: `${base}/chat`,
    body: { model, messages: [{ role: "user", content: text }], ...(events ? { events } : {}) },
    onText: (piece) => got.texts.push(piece),
    onDone: (terminate) => (got.terminate = terminate),
    onError: (err) => (got.error = `${err.name}: ${err.message}`),
  });
  return got;
}

const CLIENTS = { eventsource: viaEventSource, "eventsource-parser": viaEventSourceParser, "sse-client": viaSseClient };

const timer = setTimeout(() => {
  console.error(`read_proxy.mjs: gave up after ${TIME_LIMIT_MS} ms`);
  process.exit(2);
}, TIME_LIMIT_MS);

const { base, cases } = JSON.parse(await readAll(process.stdin));
const results = [];
for (const one of cases) results.push(await CLIENTS[one.client](base, one));
process.stdout.write(JSON.stringify(results));
clearTimeout(timer);
