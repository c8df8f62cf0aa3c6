// The demo page: one prompt, one streamed reply, over EventSource (GET /stream) or fetch (POST /chat).
import { bearer, keepKey } from "./client-key.js";
import { viaEventSource } from "./event-source.js";
import { streamChat } from "./sse-client.js";
import {
  KEY_HELP, failureWords, rehearsalModels, spentBudgetWords, statsWords, terminateWords, usageWords,
} from "./words.js";

const $ = (id) => document.getElementById(id);
const form = $("chat");
const promptBox = $("prompt");
const modelPicker = $("model");
const sendButton = $("send");
const stopButton = $("stop");
const answer = $("answer");
const reply = $("reply");
const thinking = $("thinking");
const reasoning = $("reasoning");
const tools = $("tools");
// The named events this page shows; a request that does not ask for them gets answer text only.
// `reset`: a model configured `recovery: restart` lost its answer mid-way and starts over (docs/streams.md, Mid-stream recovery).
const EVENTS = ["reasoning", "tool_call", "refusal", "reset"];
const offerTool = $("offer-tool");
// A tool the page can offer, as a tool-using client sends its own: the model may call it, the page only
// shows the call. Only over fetch: GET /stream takes no tools.
const DEMO_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The current weather in a city.",
    parameters: {
      type: "object",
      properties: { location: { type: "string" }, unit: { type: "string", enum: ["celsius", "fahrenheit"] } },
      required: ["location"],
    },
  },
};
const notice = $("notice");
const stats = $("stats");
const keyRow = $("key-row");
const keyBox = $("key");
const usageLine = $("usage");
// Past this, a prompt does not fit in a GET URL (the proxy answers 431, which EventSource cannot tell):
// such a prompt goes by fetch instead. Well under the proxy's default server.max_header_bytes (64 KiB).
const GET_PROMPT_LIMIT = 16_000;

let stopCurrent = null; // closes the running stream, if one runs

form.addEventListener("submit", (event) => {
  event.preventDefault();
  start();
});
promptBox.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
});
stopButton.addEventListener("click", () => stopCurrent?.());
form.addEventListener("change", (event) => {
  if (event.target.name === "transport") toolOnlyOverFetch();
});
keepKey(keyBox);
toolOnlyOverFetch();
loadModels();

// GET /stream takes no tools: the box is off, not silently ignored, while EventSource is chosen.
function toolOnlyOverFetch() {
  offerTool.disabled = form.elements.transport.value !== "fetch";
  if (offerTool.disabled) offerTool.checked = false;
}

/** What the caller has left of its budgets (GET /usage), when the proxy has any for it; the usage, or null. */
async function showUsage() {
  try {
    const response = await fetch("usage", { headers: bearer(clientKey()) });
    const usage = response.ok ? await response.json() : null;
    usageLine.textContent = usage ? usageWords(usage) : "";
    return usage;
  } catch {
    usageLine.textContent = "";
    return null;
  }
}

/** An EventSource refused before any text: when a budget is spent, say that instead of a guess. */
async function sayIfSpent(run) {
  const words = spentBudgetWords((await showUsage()) ?? {});
  if (words && run.over && !run.hasText) notice.textContent = words;
}

async function loadModels() {
  try {
    const response = await fetch("models");
    const { default: chosen, models, auth } = await response.json();
    for (const { name } of models) modelPicker.add(new Option(name, name, name === chosen, name === chosen));
    showRehearsals(rehearsalModels(models.map(({ name }) => name)));
    if (auth) keyRow.hidden = false;
    if (!auth || clientKey() !== null) showUsage();
  } catch (err) {
    end("error", `Could not load the list of models from the proxy (${err.message}). Is it running?`);
  }
}

function showRehearsals(known) {
  const hint = $("models-hint");
  known.forEach(([name, what], i) => {
    const code = document.createElement("code");
    code.textContent = name;
    hint.append(i === 0 ? "" : "; ", code, ` ${what}`);
  });
  if (known.length > 0) hint.append(".");
}

/** The client key typed in, or null: sent as a Bearer header, and traded for a stream token on GET. */
function clientKey() {
  return keyBox.value.trim() || null;
}

function start() {
  clearAnswer();
  stats.textContent = "";
  if (!keyRow.hidden && clientKey() === null) {
    return end("error", `This proxy wants a client key: type one in the key field above. ${KEY_HELP}`);
  }
  const request = { prompt: promptBox.value || promptBox.placeholder, model: modelPicker.value };
  const run = { began: performance.now(), firstAt: null, endAt: null, hasText: false, over: false };
  let close = () => {};
  const on = {
    text(piece) {
      if (run.over) return;
      run.firstAt ??= performance.now();
      run.hasText = true;
      reply.append(piece); // a Text node: streamed text is never parsed as HTML
      showStats(run);
    },
    reasoning(piece) {
      if (run.over) return;
      if (thinking.hidden) thinking.open = true; // open while it streams; the reader may close it
      thinking.hidden = false;
      reasoning.append(piece);
    },
    toolCall(call) {
      if (!run.over) tools.append(toolCallFigure(call));
    },
    reset() { // discard what this answer showed: it starts over
      if (run.over) return;
      clearAnswer();
      run.hasText = false;
    },
    done(terminate) {
      if (run.over) return;
      finish(run, terminate);
    },
    fail(message) {
      if (run.over) return;
      close();
      conclude(run, "error", message);
      if (!run.hasText) sayIfSpent(run);
    },
    refused(err) { // a 4xx/5xx before any stream, or no answer at all
      if (err.status === 401) keyRow.hidden = false;
      on.fail(failureWords(err));
    },
  };
  const tooLongForGet = new URLSearchParams({ prompt: request.prompt }).toString().length > GET_PROMPT_LIMIT;
  if (tooLongForGet) run.note = "Sent with fetch: this prompt is too long for EventSource's GET URL.";
  const open = form.elements.transport.value === "fetch" || tooLongForGet ? viaFetch : viaEventSource;
  close = open({ ...request, events: EVENTS, key: clientKey() }, on, () => run.hasText);
  stopCurrent = () => {
    close();
    conclude(run, "stopped", "Stopped. The proxy has cancelled the answer upstream.");
  };
  notice.textContent = "";
  setBusy(true);
  answer.dataset.state = "streaming";
}

function clearAnswer() {
  reply.textContent = "";
  reasoning.textContent = "";
  thinking.hidden = true;
  tools.textContent = "";
}

function viaFetch({ prompt, model, events, key }, on) {
  const controller = new AbortController();
  streamChat({
    url: "chat",
    headers: bearer(key),
    body: {
      model, messages: [{ role: "user", content: prompt }], events,
      ...(offerTool.checked && { tools: [DEMO_TOOL] }),
    },
    signal: controller.signal,
    onText: on.text,
    onReasoning: on.reasoning,
    onRefusal: on.text, // what the model said instead of an answer
    onToolCall: on.toolCall,
    onReset: on.reset,
    onDone: on.done,
    onError: (err) => {
      if (err.name !== "AbortError") on.refused(err);
    },
  });
  return () => controller.abort();
}

// A tool call as its name and its arguments, pretty-printed when they are JSON (they always are: the
// proxy ends the stream with an error otherwise). Built as text nodes: never parsed as HTML.
function toolCallFigure({ name, arguments: args }) {
  const figure = document.createElement("figure");
  figure.className = "tool-call";
  const caption = document.createElement("figcaption");
  caption.textContent = `Tool call: ${name}`;
  const pre = document.createElement("pre");
  try {
    pre.textContent = JSON.stringify(JSON.parse(args), null, 2);
  } catch {
    pre.textContent = args;
  }
  figure.append(caption, pre);
  return figure;
}

function finish(run, terminate) {
  const words = [run.note, terminateWords(terminate, run.hasText)].filter(Boolean).join(" ");
  conclude(run, terminate.reason === "error" ? "error" : "done", words, terminate);
  answer.dataset.recovered = terminate.recovered ? terminate.recovered.kind : "";
}

function conclude(run, state, message, terminate = null) {
  if (run.over) return;
  run.over = true;
  run.endAt = performance.now();
  stopCurrent = null;
  showStats(run, terminate);
  end(state, message);
  showUsage();
}

function end(state, message) {
  notice.textContent = message;
  answer.dataset.state = state;
  setBusy(false);
}

function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.disabled = !busy;
}

// Time to first token from the click; tokens as the upstream counted them, over the time the text streamed.
function showStats(run, terminate = null) {
  if (run.firstAt === null) return;
  stats.textContent = statsWords({
    firstMs: run.firstAt - run.began,
    streamingSeconds: ((run.endAt ?? run.firstAt) - run.firstAt) / 1000,
    tokens: terminate?.usage?.completion_tokens,
    model: terminate?.model,
  });
}
