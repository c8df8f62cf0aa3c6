// Drives the proxy's OpenAI-compatible door with the official `openai` npm package, set up as the README says.
//
// stdin: {"base": "http://127.0.0.1:PORT", "apiKey": "...", "cases": [{"kind", "model", "stream"?}, ...]}
// stdout: one result per case, in order, as JSON: what the SDK returned, or the error it raised
//         ({"error": class name, "status", "code", "content": text seen before it}).
// kind: "models" (models.list), "chat" (chat.completions.create, streamed when "stream"),
//       "abort" (stream, read the first text, then abort the request as a closed tab would).
import { text as readAll } from "node:stream/consumers";

import OpenAI from "openai";

async function chat(client, { model, stream }) {
  const messages = [{ role: "user", content: "hi" }];
  if (!stream) {
    const completion = await client.chat.completions.create({ model, messages });
    const choice = completion.choices[0];
    return { content: choice.message.content, finish: choice.finish_reason, usage: completion.usage ?? null };
  }
  const got = { content: "" };
  try {
    const chunks = await client.chat.completions.create({
      model, messages, stream: true, stream_options: { include_usage: true },
    });
    for await (const chunk of chunks) {
      if (chunk.usage) got.usage = chunk.usage;
      const choice = chunk.choices[0];
      if (choice?.delta?.content) got.content += choice.delta.content;
      if (choice?.finish_reason) got.finish = choice.finish_reason;
    }
    return got;
  } catch (error) {
    throw Object.assign(error, { seen: got.content });
  }
}

async function abort(client, { model }) {
  const chunks = await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], stream: true });
  for await (const chunk of chunks) {
    if (chunk.choices[0]?.delta?.content) {
      chunks.controller.abort();
      return { aborted: true, at: performance.timeOrigin + performance.now() };
    }
  }
  return { aborted: false };
}

async function run(client, testCase) {
  try {
    if (testCase.kind === "models") {
      const ids = [];
      for await (const model of client.models.list()) ids.push(model.id);
      return { ids };
    }
    return await (testCase.kind === "abort" ? abort : chat)(client, testCase);
  } catch (error) {
    return { error: error.constructor.name, status: error.status ?? null, code: error.code ?? null, content: error.seen ?? null };
  }
}

const input = JSON.parse(await readAll(process.stdin));
const client = new OpenAI({ baseURL: `${input.base}/v1`, apiKey: input.apiKey ?? "unused", maxRetries: 0, timeout: 20_000 });
const results = [];
for (const testCase of input.cases) results.push(await run(client, testCase));
process.stdout.write(JSON.stringify(results));
