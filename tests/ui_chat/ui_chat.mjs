// Vercel's AI SDK, unchanged, against the proxy's UI message stream door: `DefaultChatTransport` sends the
// chat (or reconnects to it) and `readUIMessageStream` builds the UIMessage, as `useChat` does.
//
// stdin: {"steps": [step, ...]}, run in order; a step is
//   {"op": "chat", "api", "chatId", "messages", "body"?, "headers"?, "cutAfter"?: N, "stopAfter"?: N, "stopApi"?}
//     cutAfter: abort the fetch after N chunks (a dropped connection); stopAfter: after N chunks, POST
//     {stopApi or api}/{chatId}/stop, as the README's stop button does, then abort the fetch as `useChat`'s
//     stop() does;
//   {"op": "resume", "api", "chatId", "headers"?}: what `useChat({resume: true})` does on mount.
// stdout: one result per step: {"message", "errors", "chunks"} (the chunk types read; `stoppedAt`, the wall
//         clock in seconds when the stop was sent), {"resumed": false} when the reconnect found no stream
//         (204), or {"thrown": message}.
import { text as readAll } from "node:stream/consumers";

import { DefaultChatTransport, readUIMessageStream } from "ai";

async function read(stream, { limit, onLimit }) {
  const chunks = [];
  const errors = [];
  let seen = 0;
  const counted = stream.pipeThrough(new TransformStream({
    async transform(chunk, controller) {
      chunks.push(chunk.type);
      controller.enqueue(chunk);
      seen += 1;
      if (limit !== undefined && seen === limit) await onLimit();
    },
  }));
  let message = null;
  try {
    const onError = (error) => {
      if (error?.name !== "AbortError") errors.push(String(error?.message ?? error)); // our own cut is no error
    };
    for await (const snapshot of readUIMessageStream({ stream: counted, onError })) {
      message = snapshot;
    }
  } catch (error) {
    if (error.name !== "AbortError") errors.push(`thrown: ${error.message}`);
  }
  return { message, errors, chunks };
}

async function chat(step) {
  const abort = new AbortController();
  const transport = new DefaultChatTransport({ api: step.api, body: step.body, headers: step.headers });
  const stream = await transport.sendMessages({
    chatId: step.chatId, messages: step.messages, abortSignal: abort.signal, trigger: "submit-message",
    messageId: undefined,
  });
  const limit = step.cutAfter ?? step.stopAfter;
  let stoppedAt;
  const result = await read(stream, {
    limit,
    async onLimit() {
      if (step.stopAfter !== undefined) {
        stoppedAt = Date.now() / 1000;
        const stopped = await fetch(`${step.stopApi ?? step.api}/${encodeURIComponent(step.chatId)}/stop`,
          { method: "POST", headers: step.headers });
        if (stopped.status !== 202) throw new Error(`stop answered ${stopped.status}: ${await stopped.text()}`);
      }
      abort.abort();
    },
  });
  return { ...result, stoppedAt };
}

async function resume(step) {
  const transport = new DefaultChatTransport({ api: step.api, headers: step.headers });
  const stream = await transport.reconnectToStream({ chatId: step.chatId });
  if (stream === null) return { resumed: false };
  return read(stream, {});
}

const input = JSON.parse(await readAll(process.stdin));
const results = [];
for (const step of input.steps) {
  try {
    results.push(step.op === "chat" ? await chat(step) : await resume(step));
  } catch (error) {
    results.push({ thrown: String(error.message ?? error) });
  }
}
process.stdout.write(JSON.stringify(results));
