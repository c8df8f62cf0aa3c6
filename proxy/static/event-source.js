// The demo page's EventSource transport (GET /stream): resumes by itself after a cut, stops on request.
// `on` is the page's callbacks (text, reasoning, toolCall, reset, done, fail, refused); returns close().
import { bearer, streamToken } from "./client-key.js";

// With resumable streams (the proxy's default) every event id is `<stream id>:<seq>`. After a cut,
// EventSource reconnects by itself with Last-Event-ID and the proxy sends only what was missed.
const MAX_RECONNECTS = 8; // in a row, without an event in between

// EventSource cannot send a header: with a key, the page first trades it for a one-stream token (POST /token).
export function viaEventSource(request, on, hasText) {
  let close = null;
  let stopped = false;
  streamQuery(request).then((query) => {
    if (!stopped) close = openEventSource(query, on, hasText, request.key);
  }, (err) => {
    if (!stopped) on.refused(err);
  });
  return () => {
    stopped = true;
    close?.();
  };
}

async function streamQuery({ prompt, model, events, key }) {
  const query = new URLSearchParams({ prompt, model, events: events.join(",") });
  if (key !== null) query.set("token", await streamToken(key));
  return query;
}

function openEventSource(query, on, hasText, key) {
  const source = new EventSource(`stream?${query}`);
  let streamId = null;
  let stopWanted = false; // Stop came before the first event told us the stream's id
  let reconnects = 0;
  const seen = (event) => { // every event, named or not: the stream is alive, and its id is known
    reconnects = 0;
    streamId ??= streamIdOf(event.lastEventId);
    if (stopWanted) stopStream(source, streamId, key);
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
    if (source.readyState === EventSource.CONNECTING && reconnects <= MAX_RECONNECTS) {
      // A proxy that is down looks like a cut too, and EventSource would retry it for half a minute:
      // ask /healthz once, and say so at once if nothing answers.
      if (reconnects === 1 && streamId === null && !hasText()) probe(source, on);
      return;
    }
    // EventSource gives no detail: a refused request and a cut connection look alike.
    source.close();
    on.fail(hasText()
      ? "The connection to the proxy was lost before the answer was finished."
      : "The proxy could not be reached, or it refused the request. The fetch transport shows why.");
  });
  return () => {
    if (streamId === null && source.readyState !== EventSource.CLOSED) stopWanted = true;
    else stopStream(source, streamId, key);
  };
}

function streamIdOf(lastEventId) {
  const colon = lastEventId.lastIndexOf(":");
  return colon > 0 ? lastEventId.slice(0, colon) : null;
}

// A deliberate stop: the proxy cancels the answer upstream now, instead of waiting for us to come back.
function stopStream(source, streamId, key) {
  source.close();
  if (streamId !== null) {
    fetch(`streams/${encodeURIComponent(streamId)}/stop`, { method: "POST", headers: bearer(key), keepalive: true })
      .catch(() => {});
  }
}

const PROBE_MS = 3000;

function probe(source, on) {
  fetch("healthz", { signal: AbortSignal.timeout(PROBE_MS), cache: "no-store" })
    .then((response) => {
      if (!response.ok) throw new Error(`healthz answered ${response.status}`);
    })
    .catch(() => {
      if (source.readyState === EventSource.CLOSED) return;
      source.close();
      on.fail("Could not reach the proxy. Is it running?");
    });
}
