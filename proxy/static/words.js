// What the demo page says, as pure functions of what the proxy sent: no DOM, no clock.

// What a person should read for each error type of a terminate event (README, "The event schema").
const ERROR_WORDS = {
  upstream_unavailable: "The model is unavailable right now. Try again in a moment.",
  upstream_rejected: "The model's provider returned an error.",
  timeout: "The model took too long to answer.",
  truncated: "The model's connection ended before the answer was finished.",
  internal_error: "The proxy itself failed; its log says why.",
};
const REASON_WORDS = {
  length: "The answer reached its token limit and was cut short.",
  content_filter: "The provider's content filter stopped the answer.",
  shutdown: "The proxy shut down and ended the answer early. Try again once it is back.",
  refusal: "The model declined this request.",
  tool_calls: "The model asked to call the tools above; this demo does not run them.",
};
// The shipped config's rehearsal models, and what each shows; the hint names only those the proxy has.
const DEMO_MODELS = [
  ["mock-error", "rehearses a failure"],
  ["mock-reasoning", "thinks before it answers"],
  ["mock-tools", "calls a tool"],
];
export const KEY_HELP = "A key is one of the proxy's auth.keys, or a JWT your backend signed for you (docs/security.md); "
  + "this page keeps yours in this tab only.";
// A budget's name (issue 23) as a person says it.
const BUDGET_WORDS = {
  tokens_per_minute: ["token allowance for this minute", "tokens this minute"],
  tokens_per_day: ["token allowance for today", "tokens today"],
  requests_per_minute: ["requests for this minute", "requests this minute"],
  spend_per_day: ["spending allowance for today", "to spend today"],
};
const RECOVERED_WORDS = {
  continue: "The connection to the model broke mid-answer; the proxy recovered it, and the answer went on where it stopped.",
  restart: "The connection to the model broke mid-answer; the proxy recovered it by starting the answer again.",
};

/** `text` as a sentence: a full stop added only when it does not already end in one (or in ! or ?). */
export function sentence(text) {
  const trimmed = String(text).trim();
  return /[.!?…]["')\]]*$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

/** The notice for a terminate event: empty for a plain stop. */
export function terminateWords(terminate, hadText) {
  const recovered = RECOVERED_WORDS[terminate.recovered?.kind] ?? "";
  if (terminate.reason !== "error") return [recovered, REASON_WORDS[terminate.reason] ?? ""].filter(Boolean).join(" ");
  const { type, message } = terminate.error ?? {};
  const partial = hadText ? " The text above is incomplete." : "";
  return `${ERROR_WORDS[type] ?? "The model failed."}${partial} It said: ${sentence(message ?? type ?? "nothing")}`;
}

/** The notice for a request the proxy refused before any stream (a ProxyHttpError, or a network error). */
export function failureWords(err) {
  if (err.status === 401) return `The proxy wants a valid client key: ${sentence(err.message)} ${KEY_HELP}`;
  if (err.status === 404) return `The proxy does not know this model: ${sentence(err.message)}`;
  if (err.status === 413) return "The prompt is larger than this proxy accepts.";
  if (err.status === 431) return "The prompt is too long to send with EventSource (GET): use the fetch transport.";
  if (err.status === 429 && err.type === "budget_exceeded") return budgetWords(err);
  if (err.status) return `The proxy refused the request (HTTP ${err.status}): ${sentence(err.message)}`;
  if (err instanceof TypeError) return "Could not reach the proxy. Is it running?";
  return `The stream failed: ${sentence(err.message)}`;
}

/** The rehearsal models this proxy has, as [name, what it shows]: the hint names only those. */
export function rehearsalModels(names) {
  return DEMO_MODELS.filter(([name]) => names.includes(name));
}

/**
 * The stats under the reply. Only tokens are counted, and only as the upstream reported them
 * (`usage.completion_tokens` of the terminate): a text event may carry several tokens, or part of one.
 */
export function statsWords({ firstMs, streamingSeconds, tokens, model }) {
  const parts = [`first token ${Math.round(firstMs)} ms`];
  if (tokens !== undefined) {
    parts.push(`${tokens} ${tokens === 1 ? "token" : "tokens"}`);
    if (streamingSeconds > 0) parts.push(`${(tokens / streamingSeconds).toFixed(1)} tokens/s`);
  }
  if (model) parts.push(`answered by ${model}`);
  return parts.join(" · ");
}

/** "41 seconds", "2 minutes", "3 hours": how long until a budget frees, rounded up. */
export function durationWords(seconds) {
  const [amount, unit] = seconds < 60 ? [seconds, "second"] : seconds < 3600 ? [Math.ceil(seconds / 60), "minute"]
    : [Math.ceil(seconds / 3600), "hour"];
  return `${amount} ${unit}${amount === 1 ? "" : "s"}`;
}

/** A 429 budget_exceeded in plain words: which allowance is used up, and when the next request may go. */
export function budgetWords(err) {
  return spentWords(/budget (\w+)/.exec(err.message ?? "")?.[1], err.retryAfter);
}

function spentWords(budget, seconds) {
  const [what] = BUDGET_WORDS[budget] ?? ["allowance"];
  const when = seconds ? ` You can send again in ${durationWords(seconds)}.` : " Try again later.";
  return `You have used up your ${what}.${when}`;
}

/** From GET /usage, the words for the first budget with nothing left; empty when none is spent. EventSource
 * cannot read a refusal's status, so the page asks /usage whether a budget was the reason. */
export function spentBudgetWords({ budgets = [] } = {}) {
  const spent = budgets.find(({ left }) => left <= 0);
  return spent ? spentWords(spent.budget, spent.resets_in) : "";
}

/** GET /usage as one line: what is left in each window; empty when the caller has no budget. */
export function usageWords({ budgets = [] } = {}) {
  const parts = budgets.map(({ budget, limit, left }) => {
    const [, window] = BUDGET_WORDS[budget] ?? [null, budget];
    const amount = (n) => (budget === "spend_per_day" ? n.toFixed(2) : n.toLocaleString("en-US"));
    return `${amount(left)} of ${amount(limit)} ${window}`;
  });
  return parts.length ? `Left: ${parts.join(" · ")}.` : "";
}
