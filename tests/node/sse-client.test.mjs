// Unit tests for proxy/static/sse-client.js (node:test). tests/test_node_clients.py runs them.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createParser, ProxyHttpError, streamChat } from "../../proxy/static/sse-client.js";

function parse(chunks) {
  const events = [];
  const comments = [];
  const parser = createParser({ onEvent: (e) => events.push(e), onComment: (c) => comments.push(c) });
  for (const chunk of chunks) parser.feed(chunk);
  return { events, comments };
}

// Every way of cutting `text` into two chunks, and into single characters.
function splits(text) {
  const ways = [[text], [...text]];
  for (let i = 1; i < text.length; i++) ways.push([text.slice(0, i), text.slice(i)]);
  return ways;
}

const TABLE = [
  ["LF", "data: a\n\n", [{ type: "message", data: "a", id: "" }]],
  ["CRLF", "data: a\r\n\r\n", [{ type: "message", data: "a", id: "" }]],
  ["CR", "data: a\r\rdata: b\r\r", [{ type: "message", data: "a", id: "" }, { type: "message", data: "b", id: "" }]],
  ["mixed line ends", "data: a\r\ndata: b\rdata: c\n\r\n", [{ type: "message", data: "a\nb\nc", id: "" }]],
  ["multi-line data joins with LF", "data: one\ndata:two\ndata:  three\n\n", [{ type: "message", data: "one\ntwo\n three", id: "" }]],
  ["empty data line", "data\n\n", [{ type: "message", data: "", id: "" }]],
  ["comments are not events", ": ping\n\n:\n\ndata: x\n\n", [{ type: "message", data: "x", id: "" }]],
  ["one BOM is dropped", "\uFEFFdata: x\n\n", [{ type: "message", data: "x", id: "" }]],
  ["a second BOM is a field name", "\uFEFF\uFEFFdata: x\n\ndata: y\n\n", [{ type: "message", data: "y", id: "" }]],
  ["ids stick; NUL ids are ignored", "id: 7\ndata: a\n\nid: 8\0\ndata: b\n\nid\ndata: c\n\n",
    [{ type: "message", data: "a", id: "7" }, { type: "message", data: "b", id: "7" }, { type: "message", data: "c", id: "" }]],
  ["named events", "event: update\ndata: u\n\ndata: m\n\n", [{ type: "update", data: "u", id: "" }, { type: "message", data: "m", id: "" }]],
  ["unknown fields are ignored", "foo: bar\nretry: 10x\ndata: a\n\n", [{ type: "message", data: "a", id: "" }]],
  ["an unterminated final event is discarded", "data: a\n\ndata: b\n", [{ type: "message", data: "a", id: "" }]],
  ["a blank line with no data sends nothing", "\n\nevent: x\n\ndata: a\n\n", [{ type: "message", data: "a", id: "" }]],
];

for (const [name, stream, expected] of TABLE) {
  test(`parser: ${name}, however the stream is cut`, () => {
    for (const chunks of splits(stream)) {
      assert.deepEqual(parse(chunks).events, expected, JSON.stringify(chunks));
    }
  });
}

test("parser: CR at the end of one chunk, LF at the start of the next, is one line end", () => {
  assert.deepEqual(parse(["data: a\r", "\ndata: b\r", "\n\r", "\n"]).events, [{ type: "message", data: "a\nb", id: "" }]);
});

test("parser: comments reach onComment", () => {
  assert.deepEqual(parse([": ping\n", ":x\n\n"]).comments, [" ping", "x"]);
});

test("parser: retry reaches onRetry only when all digits", () => {
  const retries = [];
  const parser = createParser({ onEvent: () => {}, onRetry: (ms) => retries.push(ms) });
  parser.feed("retry: 3000\nretry: 1000x\nretry: +5\nretry: 0100\n\n");
  assert.deepEqual(retries, [3000, 100]);
});

test("parser: a 64 KiB line fed in 1 KiB chunks", () => {
  const big = "x".repeat(65536);
  const stream = `data: ${big}\n\n`;
  const chunks = [];
  for (let i = 0; i < stream.length; i += 1024) chunks.push(stream.slice(i, i + 1024));
  assert.deepEqual(parse(chunks).events, [{ type: "message", data: big, id: "" }]);
});

// streamChat against a fake fetch whose body arrives in the given byte chunks.
function fakeFetch(status, chunks, headers = { "content-type": "text/event-stream" }) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init });
    if (init.signal?.aborted) throw new DOMException("aborted", "AbortError");
    const body = new ReadableStream({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk);
        controller.close();
      },
    });
    return new Response(body, { status, headers });
  };
  return { fetch, calls };
}

async function run(fake, extra = {}) {
  const saved = globalThis.fetch;
  globalThis.fetch = fake.fetch;
  const seen = { texts: [], done: [], errors: [] };
  try {
    await streamChat({
      url: "http://proxy.test/chat",
      body: { messages: [{ role: "user", content: "hi" }] },
      onText: (t) => seen.texts.push(t),
      onDone: (t) => seen.done.push(t),
      onError: (e) => seen.errors.push(e),
      ...extra,
    });
  } finally {
    globalThis.fetch = saved;
  }
  return seen;
}

test("streamChat: texts, then one onDone; a UTF-8 character split across chunks survives", async () => {
  const bytes = new TextEncoder().encode('id: 1\ndata: {"text":"h\\u00e9 🎉"}\n\nid: 2\ndata: {"action":"terminate","reason":"stop"}\n\n');
  const at = bytes.indexOf(0xf0); // the emoji's first byte: cut its four bytes 1 + 2 + 1
  const chunks = [bytes.slice(0, at + 1), bytes.slice(at + 1, at + 3), bytes.slice(at + 3)];
  const fake = fakeFetch(200, chunks);
  const seen = await run(fake, { headers: { "x-request-id": "r1" } });
  assert.deepEqual(seen.texts, ["hé 🎉"]);
  assert.deepEqual(seen.done, [{ action: "terminate", reason: "stop" }]);
  assert.deepEqual(seen.errors, []);
  const { init } = fake.calls[0];
  assert.equal(init.method, "POST");
  assert.equal(init.headers["content-type"], "application/json");
  assert.equal(init.headers["x-request-id"], "r1");
  assert.deepEqual(JSON.parse(init.body), { messages: [{ role: "user", content: "hi" }] });
});

test("streamChat: an HTTP error becomes onError with the proxy's JSON error", async () => {
  const body = JSON.stringify({ error: { type: "not_found", message: "unknown model 'x'" } });
  const seen = await run(fakeFetch(404, [body], { "content-type": "application/json" }));
  assert.equal(seen.errors.length, 1);
  assert.ok(seen.errors[0] instanceof ProxyHttpError);
  assert.deepEqual([seen.errors[0].status, seen.errors[0].type, seen.errors[0].message], [404, "not_found", "unknown model 'x'"]);
  assert.deepEqual(seen.done, []);
});

test("streamChat: an HTTP error without a JSON body still says what happened", async () => {
  const seen = await run(fakeFetch(502, ["<html>bad gateway</html>"], { "content-type": "text/html" }));
  assert.equal(seen.errors[0].status, 502);
  assert.match(seen.errors[0].message, /HTTP 502/);
});

test("streamChat: a stream that ends without a terminate is an error", async () => {
  const seen = await run(fakeFetch(200, ['data: {"text":"a"}\n\ndata: {"text":"b"}\n']));
  assert.deepEqual(seen.texts, ["a"]);
  assert.equal(seen.errors.length, 1);
  assert.match(seen.errors[0].message, /ended before/);
});

test("streamChat: a network error reaches onError", async () => {
  const fetch = async () => {
    throw new TypeError("fetch failed");
  };
  const seen = await run({ fetch });
  assert.deepEqual(seen.errors.map((e) => e.message), ["fetch failed"]);
});

test("streamChat: an abort ends it with one AbortError", async () => {
  const controller = new AbortController();
  controller.abort();
  const seen = await run(fakeFetch(200, ['data: {"text":"a"}\n\n']), { signal: controller.signal });
  assert.deepEqual(seen.errors.map((e) => e.name), ["AbortError"]);
  assert.deepEqual(seen.texts, []);
});

test("streamChat: events after the terminate are ignored", async () => {
  const seen = await run(fakeFetch(200, ['data: {"action":"terminate","reason":"error","error":{"type":"t","message":"m"}}\n\ndata: {"text":"late"}\n\n']));
  assert.deepEqual(seen.done.map((d) => d.error.message), ["m"]);
  assert.deepEqual(seen.texts, []);
  assert.deepEqual(seen.errors, []);
});

test("streamChat: named events reach onReasoning, onToolCall, onRefusal and onNamedEvent, never onText", async () => {
  const call = { index: 0, id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' };
  const stream = [
    'id: 1\nevent: reasoning\ndata: {"text":"Let me think."}\n\n',
    'id: 2\ndata: {"text":"Sunny"}\n\n',
    'id: 3\nevent: tool_call_delta\ndata: {"index":0,"arguments":"{}"}\n\n',
    `id: 4\nevent: tool_call\ndata: ${JSON.stringify(call)}\n\n`,
    'id: 5\nevent: refusal\ndata: {"text":"No."}\n\n',
    'id: 6\nevent: something_new\ndata: {"text":"not the answer"}\n\n',
    'id: 7\ndata: {"action":"terminate","reason":"tool_calls"}\n\n',
  ];
  const seen = { reasoning: [], calls: [], refusals: [], named: [] };
  const result = await run(fakeFetch(200, stream), {
    onReasoning: (t) => seen.reasoning.push(t),
    onToolCall: (c) => seen.calls.push(c),
    onRefusal: (t) => seen.refusals.push(t),
    onNamedEvent: (type) => seen.named.push(type),
  });
  assert.deepEqual(result.texts, ["Sunny"]);
  assert.deepEqual(seen.reasoning, ["Let me think."]);
  assert.deepEqual(seen.calls, [call]);
  assert.deepEqual(seen.refusals, ["No."]);
  assert.deepEqual(seen.named, ["reasoning", "tool_call_delta", "tool_call", "refusal", "something_new"]);
  assert.deepEqual(result.done, [{ action: "terminate", reason: "tool_calls" }]);
});

test("streamChat: a reset reaches onReset between the texts it discards and the answer that starts over", async () => {
  const log = [];
  await run(fakeFetch(200, [
    'id: 1\ndata: {"text":"Hel"}\n\n',
    'id: 2\nevent: reset\ndata: {"action":"reset","reason":"truncated","model":"backup"}\n\n',
    'id: 3\ndata: {"text":"Hello!"}\n\n',
    'id: 4\ndata: {"action":"terminate","reason":"stop","recovered":{"kind":"restart","after_chars":3,"model":"backup"}}\n\n',
  ]), {
    onText: (t) => log.push(["text", t]),
    onReset: (p) => log.push(["reset", p.reason, p.model]),
    onDone: (t) => log.push(["done", t.recovered.kind]),
  });
  assert.deepEqual(log, [["text", "Hel"], ["reset", "truncated", "backup"], ["text", "Hello!"], ["done", "restart"]]);
});

test("streamChat: without the new callbacks, named events are ignored", async () => {
  const seen = await run(fakeFetch(200, [
    'event: reasoning\ndata: {"text":"hidden"}\n\ndata: {"text":"shown"}\n\ndata: {"action":"terminate","reason":"stop"}\n\n',
  ]));
  assert.deepEqual(seen.texts, ["shown"]);
  assert.equal(seen.done.length, 1);
});

// A resumable stream: the first body is cut by a network error; the reconnect replays from the cursor.
function resumableFetch(first, rest, { failReconnects = 0 } = {}) {
  const calls = [];
  const sse = { "content-type": "text/event-stream", "x-stream-id": "S" };
  const fetch = async (url, init = {}) => {
    calls.push({ url, init });
    if (calls.length === 1) {
      let pulls = 0;
      const body = new ReadableStream({
        pull(controller) {
          if (pulls++ === 0) controller.enqueue(new TextEncoder().encode(first));
          else controller.error(new TypeError("terminated")); // the connection was cut
        },
      });
      return new Response(body, { status: 200, headers: sse });
    }
    if (init.method === "POST") return new Response("{}", { status: 202 });
    if (failReconnects-- > 0) throw new TypeError("fetch failed");
    return new Response(rest, { status: 200, headers: sse });
  };
  return { fetch, calls };
}

test("streamChat: a cut stream resumes from its last event id, and a replayed event is not shown twice", async () => {
  const first = 'id: S:1\ndata: {"text":"a"}\n\nid: S:2\ndata: {"text":"b"}\n\n';
  const rest = 'id: S:2\ndata: {"text":"b"}\n\nid: S:3\ndata: {"text":"c"}\n\nid: S:4\ndata: {"action":"terminate","reason":"stop"}\n\n';
  const fake = resumableFetch(first, rest, { failReconnects: 1 });
  const seen = await run(fake);
  assert.deepEqual(seen.texts, ["a", "b", "c"]);
  assert.deepEqual(seen.done, [{ action: "terminate", reason: "stop" }]);
  assert.deepEqual(seen.errors, []);
  const resumes = fake.calls.slice(1);
  assert.deepEqual(resumes.map((c) => c.url), ["http://proxy.test/streams/S", "http://proxy.test/streams/S"]);
  assert.equal(resumes[1].init.headers["last-event-id"], "S:2");
});

test("streamChat: a stream the proxy no longer has (204) ends as an error, after no new text", async () => {
  const fake = resumableFetch('id: S:1\ndata: {"text":"a"}\n\n', "");
  const saved = fake.fetch;
  fake.fetch = async (url, init) => (url.endsWith("/streams/S") ? new Response(null, { status: 204 }) : saved(url, init));
  const seen = await run(fake);
  assert.deepEqual(seen.texts, ["a"]);
  assert.match(seen.errors[0].message, /ended before/);
});

test("streamChat: an abort asks the proxy to stop the stream", async () => {
  const controller = new AbortController();
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init });
    if (init.method === "POST" && url.endsWith("/stop")) return new Response("{}", { status: 202 });
    const body = new ReadableStream({
      start(stream) {
        stream.enqueue(new TextEncoder().encode('id: S:1\ndata: {"text":"a"}\n\n'));
        init.signal.addEventListener("abort", () => stream.error(new DOMException("aborted", "AbortError")));
      },
    });
    return new Response(body, { status: 200, headers: { "content-type": "text/event-stream", "x-stream-id": "S" } });
  };
  const seen = await run({ fetch }, { signal: controller.signal, onText: () => controller.abort() });
  assert.deepEqual(seen.errors.map((e) => e.name), ["AbortError"]);
  const stop = calls.find((c) => c.url.endsWith("/stop"));
  assert.equal(stop?.url, "http://proxy.test/streams/S/stop");
  assert.equal(stop.init.method, "POST");
});
