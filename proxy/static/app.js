// The demo page: one prompt, one streamed reply, over EventSource (GET /stream) or fetch (POST /chat).
import { streamChat } from "./sse-client.js";

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
  shutdown: "The proxy is restarting and ended the answer early. Try again in a moment.",
  refusal: "The model declined this request.",
  tool_calls: "The model asked to call the tools above; this demo does not run them.",
};

let stopCurrent = null; // closes the running stream, if one runs

form.addEventListener("submit", (event) => {
  event.preventDefault();
  start();
});
promptBox.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
});
stopButton.addEventListener("click", () => stopCurrent?.());
loadModels();

async function loadModels() {
  try {
    const response = await fetch("models");
    const { default: chosen, models } = await response.json();
    for (const { name } of models) modelPicker.add(new Option(name, name, name === chosen, name === chosen));
  } catch (err) {
    end("error", `Could not load the list of models from the proxy (${err.message}). Is it running?`);
  }
}

function start() {
  const request = { prompt: promptBox.value || promptBox.placeholder, model: modelPicker.value };
  const run = { began: performance.now(), firstAt: null, endAt: null, deltas: 0, over: false };
  let close = () => {};
  const on = {
    text(piece) {
      if (run.over) return;
      run.firstAt ??= performance.now();
      run.deltas += 1;
      reply.append(piece); // a Text node: streamed text is never parsed as HTML
      showStats(run);
    },
    reasoning(piece) {
      if (run.over) return;
      thinking.hidden = false;
      reasoning.append(piece);
    },
    toolCall(call) {
      if (!run.over) tools.append(toolCallFigure(call));
    },
    reset() { // discard what this answer showed: it starts over
      if (run.over) return;
      reply.textContent = "";
      reasoning.textContent = "";
      thinking.hidden = true;
      tools.textContent = "";
      run.deltas = 0;
    },
    done(terminate) {
      if (run.over) return;
      finish(run, terminate);
    },
    fail(message) {
      if (run.over) return;
      close();
      conclude(run, "error", message);
    },
  };
  const open = form.elements.transport.value === "fetch" ? viaFetch : viaEventSource;
  close = open(request, on, () => run.deltas > 0);
  stopCurrent = () => {
    close();
    conclude(run, "stopped", "Stopped. The proxy has cancelled the answer upstream.");
  };
  reply.textContent = "";
  reasoning.textContent = "";
  thinking.hidden = true;
  tools.textContent = "";
  notice.textContent = "";
  stats.textContent = "";
  setBusy(true);
  answer.dataset.state = "streaming";
}

// With resumable streams (the proxy's default) every event id is `<stream id>:<seq>`. After a cut,
// EventSource reconnects by itself with Last-Event-ID and the proxy sends only what was missed.
const MAX_RECONNECTS = 8; // in a row, without an event in between

function viaEventSource({ prompt, model }, on, hasText) {
  const source = new EventSource(`stream?${new URLSearchParams({ prompt, model, events: EVENTS.join(",") })}`);
  let streamId = null;
  let stopWanted = false; // Stop came before the first event told us the stream's id
  let reconnects = 0;
  const seen = (event) => { // every event, named or not: the stream is alive, and its id is known
    reconnects = 0;
    streamId ??= streamIdOf(event.lastEventId);
    if (stopWanted) stopStream(source, streamId);
    return !stopWanted;
  };
  source.addEventListener("reasoning", (event) => seen(event) && on.reasoning(JSON.parse(event.data).text));
  source.addEventListener("refusal", (event) => seen(event) && on.text(JSON.parse(event.data).text));
  source.addEventListener("tool_call", (event) => seen(event) && on.toolCall(JSON.parse(event.data)));
  source.addEventListener("reset", (event) => seen(event) && on.reset());
  source.addEventListener("message", (event) => {
    if (!seen(event)) return;
    const payload = JSON.parse(event.data);
    if (payload.action === "terminate") {
      source.close(); // an EventSource left open reconnects, and the model is asked again
      on.done(payload);
    } else {
      on.text(payload.text);
    }
  });
  source.addEventListener("error", () => {
    // Reconnecting (CONNECTING) after a cut resumes the stream; CLOSED means the proxy refused.
    reconnects += 1;
    if (source.readyState === EventSource.CONNECTING && reconnects <= MAX_RECONNECTS) return;
    // EventSource gives no detail: a refused request and a cut connection look alike.
    source.close();
    on.fail(hasText()
      ? "The connection to the proxy was lost before the answer was finished."
      : "The proxy could not be reached, or it refused the request. The fetch transport shows why.");
  });
  return () => {
    if (streamId === null && source.readyState !== EventSource.CLOSED) stopWanted = true;
    else stopStream(source, streamId);
  };
}

function streamIdOf(lastEventId) {
  const colon = lastEventId.lastIndexOf(":");
  return colon > 0 ? lastEventId.slice(0, colon) : null;
}

// A deliberate stop: the proxy cancels the answer upstream now, instead of waiting for us to come back.
function stopStream(source, streamId) {
  source.close();
  if (streamId !== null) {
    fetch(`streams/${encodeURIComponent(streamId)}/stop`, { method: "POST", keepalive: true }).catch(() => {});
  }
}

function viaFetch({ prompt, model }, on) {
  const controller = new AbortController();
  streamChat({
    url: "chat",
    body: {
      model, messages: [{ role: "user", content: prompt }], events: EVENTS,
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
      if (err.name !== "AbortError") on.fail(describeFailure(err));
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

function describeFailure(err) {
  if (err.status === 404) return `The proxy does not know this model: ${err.message}.`;
  if (err.status === 413) return "The prompt is larger than this proxy accepts.";
  if (err.status) return `The proxy refused the request (HTTP ${err.status}): ${err.message}.`;
  if (err instanceof TypeError) return "Could not reach the proxy. Is it running?";
  return `The stream failed: ${err.message}.`;
}

function finish(run, terminate) {
  if (terminate.reason === "error") {
    const { type, message } = terminate.error ?? {};
    const words = ERROR_WORDS[type] ?? "The model failed.";
    const partial = run.deltas > 0 ? " The text above is incomplete." : "";
    return conclude(run, "error", `${words}${partial} It said: ${message ?? type}.`, terminate);
  }
  conclude(run, "done", REASON_WORDS[terminate.reason] ?? "", terminate);
}

function conclude(run, state, message, terminate = null) {
  if (run.over) return;
  run.over = true;
  run.endAt = performance.now();
  stopCurrent = null;
  showStats(run, terminate);
  end(state, message);
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

// Time to first token from the click; the rate over the time the text was streaming.
function showStats(run, terminate = null) {
  if (run.firstAt === null) return;
  const tokens = terminate?.usage?.completion_tokens;
  const unit = tokens === undefined ? "deltas" : "tokens";
  const count = tokens ?? run.deltas;
  const parts = [`first token ${Math.round(run.firstAt - run.began)} ms`, `${count} ${unit}`];
  const seconds = ((run.endAt ?? performance.now()) - run.firstAt) / 1000;
  if (run.endAt !== null && seconds > 0) parts.push(`${(count / seconds).toFixed(1)} ${unit}/s`);
  if (terminate?.model) parts.push(`answered by ${terminate.model}`);
  stats.textContent = parts.join(" · ");
}
