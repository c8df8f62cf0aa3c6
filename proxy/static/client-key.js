// The client key (or a user's JWT, issue 23) of a proxy with auth on: typed once, kept in this tab's sessionStorage (gone when it
// closes), sent as a Bearer header, and never put in a URL: EventSource gets a one-stream token instead.
import { ProxyHttpError, retryAfterOf } from "./sse-client.js";

const STORE = "llm-sse-proxy.key";

/** Fill the key field from this tab's storage, and keep what is typed there. */
export function keepKey(input) {
  input.value = sessionStorage.getItem(STORE) ?? "";
  input.addEventListener("input", () => sessionStorage.setItem(STORE, input.value.trim()));
}

/** The header that carries a key; none without one. */
export function bearer(key) {
  return key === null ? {} : { authorization: `Bearer ${key}` };
}

/** A one-stream token for GET /stream, from POST /token; a ProxyHttpError when the key is refused. */
export async function streamToken(key) {
  const response = await fetch("token", { method: "POST", headers: bearer(key) });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ProxyHttpError(response.status, body.error?.type, body.error?.message ?? "", retryAfterOf(response));
  }
  return body.token;
}
