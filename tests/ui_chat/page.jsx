// A useChat page that talks to the proxy directly: no server code of its own. The README's snippet, with the
// proxy's address, the chat id and the model taken from the query string so the browser test can set them.
import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport } from "ai";
import { useState } from "react";
import { createRoot } from "react-dom/client";

// The test's settings; the README sets these three constants itself.
const params = new URLSearchParams(location.search);
const api = params.get("api");
const chatId = params.get("chat");
const model = params.get("model");

// From here to the end, the README's snippet word for word (tests/browser/test_ui_chat_page.py checks).
const transport = new DefaultChatTransport({ api, body: { model } });

function App() {
  const { messages, sendMessage, status, stop, error } = useChat({ id: chatId, transport, resume: true });
  const [input, setInput] = useState("");
  // stop() only aborts the fetch, which a resumable stream outlives: ask the proxy to stop the model too.
  const stopModel = () => {
    fetch(`${api}/${encodeURIComponent(chatId)}/stop`, { method: "POST", keepalive: true });
    stop();
  };
  const answer = messages.filter((m) => m.role === "assistant").at(-1);
  const text = answer ? answer.parts.filter((p) => p.type === "text").map((p) => p.text).join("") : "";
  const busy = status === "submitted" || status === "streaming";
  return (
    <main>
      <input id="prompt" value={input} onChange={(e) => setInput(e.target.value)} />
      <button id="send" disabled={busy} onClick={() => { sendMessage({ text: input }); setInput(""); }}>Send</button>
      <button id="stop" disabled={!busy} onClick={stopModel}>Stop</button>
      <p id="status">{status}</p>
      <p id="answer">{text}</p>
      <p id="error">{error ? error.message : ""}</p>
    </main>
  );
}

createRoot(document.getElementById("root")).render(<App />);
