// Table tests for proxy/static/words.js, what the demo page says (node:test). tests/browser/test_demo_words.py runs them.
import assert from "node:assert/strict";
import { test } from "node:test";

import { ProxyHttpError, retryAfterOf } from "../../proxy/static/sse-client.js";
import {
  durationWords, failureWords, rehearsalModels, sentence, spentBudgetWords, statsWords, terminateWords, usageWords,
} from "../../proxy/static/words.js";

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
  assert.match(refused, /^The proxy wants a valid client key: send a valid key\. A key is one of the proxy's auth\.keys, or a JWT/);
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

// Issue 23: budgets in plain words; issue 26: a recovered answer says so, and a proxy that shut down is not "restarting".
test("a spent budget says which allowance and when, in plain words", () => {
  const spent = new ProxyHttpError(429, "budget_exceeded", "the budget tokens_per_minute (20000) is spent; it frees in 41 s", 41);
  assert.equal(failureWords(spent), "You have used up your token allowance for this minute. You can send again in 41 seconds.");
  const daily = new ProxyHttpError(429, "budget_exceeded", "the budget spend_per_day (1.5) is spent; it frees in 7200 s", 7200);
  assert.equal(failureWords(daily), "You have used up your spending allowance for today. You can send again in 2 hours.");
  const vague = new ProxyHttpError(429, "budget_exceeded", "spent");
  assert.equal(failureWords(vague), "You have used up your allowance. Try again later.");
});

const DURATIONS = [[1, "1 second"], [41, "41 seconds"], [60, "1 minute"], [61, "2 minutes"], [3600, "1 hour"], [86399, "24 hours"]];
for (const [seconds, want] of DURATIONS) {
  test(`durationWords(${seconds})`, () => assert.equal(durationWords(seconds), want));
}

const USAGES = [
  [{ budgets: [] }, ""],
  [{}, ""],
  [{ budgets: [{ budget: "tokens_per_minute", limit: 20000, used: 1200, left: 18800 },
    { budget: "tokens_per_day", limit: 200000, used: 10000, left: 190000 }] },
  "Left: 18,800 of 20,000 tokens this minute · 190,000 of 200,000 tokens today."],
  [{ budgets: [{ budget: "spend_per_day", limit: 1.5, used: 0.25, left: 1.25 }] }, "Left: 1.25 of 1.50 to spend today."],
];
for (const [usage, want] of USAGES) {
  test(`usageWords(${JSON.stringify(usage)})`, () => assert.equal(usageWords(usage), want));
}

test("a recovered answer says it was recovered; a shutdown is not called a restart", () => {
  assert.equal(terminateWords({ reason: "stop", recovered: { kind: "continue" } }, true),
    "The connection to the model broke mid-answer; the proxy recovered it, and the answer went on where it stopped.");
  assert.match(terminateWords({ reason: "length", recovered: { kind: "restart" } }, true), /starting the answer again\. The answer reached/);
  assert.doesNotMatch(terminateWords({ reason: "shutdown" }, true), /restarting/);
  assert.equal(failureWords(new ProxyHttpError(431, "request_header_fields_too_large", "")),
    "The prompt is too long to send with EventSource (GET): use the fetch transport.");
});

test("retryAfterOf reads delta-seconds only", () => {
  const of = (value) => retryAfterOf({ headers: new Headers(value === null ? {} : { "retry-after": value }) });
  assert.equal(of("41"), 41);
  assert.equal(of(null), null);
  assert.equal(of("Wed, 21 Oct 2026 07:28:00 GMT"), null);
});

test("spentBudgetWords names the first budget with nothing left, from GET /usage", () => {
  const usage = { budgets: [{ budget: "tokens_per_day", limit: 10, used: 3, left: 7, resets_in: 500 },
    { budget: "requests_per_minute", limit: 1, used: 1, left: 0, resets_in: 41 }] };
  assert.equal(spentBudgetWords(usage), "You have used up your requests for this minute. You can send again in 41 seconds.");
  assert.equal(spentBudgetWords({ budgets: [usage.budgets[0]] }), "");
  assert.equal(spentBudgetWords({}), "");
});
