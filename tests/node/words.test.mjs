// Table tests for proxy/static/words.js, what the demo page says (node:test). tests/browser/test_demo_words.py runs them.
import assert from "node:assert/strict";
import { test } from "node:test";

import { ProxyHttpError } from "../../proxy/static/sse-client.js";
import { failureWords, rehearsalModels, sentence, statsWords, terminateWords } from "../../proxy/static/words.js";

const SENTENCES = [
  ["Service unavailable", "Service unavailable."],
  ["Service unavailable.", "Service unavailable."],
  ["Service unavailable. ", "Service unavailable."],
  ["Are you there?", "Are you there?"],
  ["Stop!", "Stop!"],
  ["It said \"no.\"", "It said \"no.\""],
  ["cut short…", "cut short…"],
  ["version 1.2", "version 1.2."],
  ["", "."],
];
for (const [text, want] of SENTENCES) {
  test(`sentence(${JSON.stringify(text)})`, () => assert.equal(sentence(text), want));
}

const TERMINATES = [
  [{ reason: "stop" }, false, ""],
  [{ reason: "length" }, true, "The answer reached its token limit and was cut short."],
  [{ reason: "error", error: { type: "upstream_unavailable", message: "Service unavailable." } }, true,
    "The model is unavailable right now. Try again in a moment. The text above is incomplete. It said: Service unavailable."],
  [{ reason: "error", error: { type: "timeout", message: "no first token within 30 s" } }, false,
    "The model took too long to answer. It said: no first token within 30 s."],
  [{ reason: "error", error: { type: "something_new" } }, false, "The model failed. It said: something_new."],
];
for (const [terminate, hadText, want] of TERMINATES) {
  test(`terminateWords(${JSON.stringify(terminate)}, ${hadText})`, () => assert.equal(terminateWords(terminate, hadText), want));
}

test("failureWords: one full stop, and a 401 says what a key is", () => {
  const refused = failureWords(new ProxyHttpError(401, "unauthorized", "send a valid key."));
  assert.match(refused, /^The proxy wants a valid client key: send a valid key\. Keys are the proxy's auth\.keys/);
  assert.equal(failureWords(new ProxyHttpError(404, "not_found", "unknown model 'x'")),
    "The proxy does not know this model: unknown model 'x'.");
  assert.equal(failureWords(new ProxyHttpError(429, "rate_limited", "slow down.")),
    "The proxy refused the request (HTTP 429): slow down.");
  assert.equal(failureWords(new TypeError("fetch failed")), "Could not reach the proxy. Is it running?");
  for (const words of [refused, failureWords(new Error("bad data."))]) assert.doesNotMatch(words, /\.\./);
});

test("rehearsalModels names only the models the proxy has, in the hint's order", () => {
  assert.deepEqual(rehearsalModels(["mock", "mock-tools", "mock-error"]).map(([name]) => name), ["mock-error", "mock-tools"]);
  assert.deepEqual(rehearsalModels(["gpt"]), []);
});

const STATS = [
  [{ firstMs: 12.4 }, "first token 12 ms"],
  [{ firstMs: 12, streamingSeconds: 2, tokens: 41, model: "gpt" }, "first token 12 ms · 41 tokens · 20.5 tokens/s · answered by gpt"],
  [{ firstMs: 12, streamingSeconds: 0, tokens: 1 }, "first token 12 ms · 1 token"],
  [{ firstMs: 12, streamingSeconds: 3, model: "gpt" }, "first token 12 ms · answered by gpt"],
];
for (const [run, want] of STATS) {
  test(`statsWords(${JSON.stringify(run)})`, () => assert.equal(statsWords(run), want));
}
