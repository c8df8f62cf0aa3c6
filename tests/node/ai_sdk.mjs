// A third-party harness that speaks only OpenAI's API, unchanged: Vercel's AI SDK (`ai`) with its
// OpenAI-compatible provider, pointed at the proxy's /v1.
//
// stdin: {"base": "http://127.0.0.1:PORT", "cases": [{"model", "stream"}, ...]}
// stdout: one result per case: {"text", "finish", "usage"} or, for a stream, also {"errors": [...]}: the
//         error parts the SDK's fullStream reported (a cut stream must show one, and never finish "stop").
import { text as readAll } from "node:stream/consumers";

import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, streamText } from "ai";

async function run(provider, { model, stream }) {
  const prompt = "hi";
  try {
    if (!stream) {
      const result = await generateText({ model: provider(model), prompt, maxRetries: 0 });
      return { text: result.text, finish: result.finishReason, usage: result.usage.totalTokens ?? null };
    }
    const result = streamText({ model: provider(model), prompt, maxRetries: 0 });
    const got = { text: "", errors: [] };
    for await (const part of result.fullStream) {
      if (part.type === "text-delta") got.text += part.text;
      else if (part.type === "error") got.errors.push(String(part.error?.message ?? part.error));
      else if (part.type === "finish") got.finish = part.finishReason;
    }
    return got;
  } catch (error) {
    return { thrown: error.constructor.name, status: error.statusCode ?? null, message: String(error.message) };
  }
}

const input = JSON.parse(await readAll(process.stdin));
const provider = createOpenAICompatible({ name: "llm-sse-proxy", baseURL: `${input.base}/v1`, apiKey: "unused",
  includeUsage: true });
const results = [];
for (const testCase of input.cases) results.push(await run(provider, testCase));
process.stdout.write(JSON.stringify(results));
