/**
 * A fake OpenAI-compatible chat-completions server on 127.0.0.1 (real HTTP over loopback) for tests of
 * everything that calls an LLM: scripted assistant replies plus the faults real servers produce — 429 with
 * Retry-After, 5xx, 400 with an error body, slow replies, connection resets, malformed JSON. It records
 * every parsed request body (with arrival time) and the peak number of requests in flight.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { AddressInfo } from "node:net";

export type FakeReply =
  | string
  | {
      /** Assistant text with an explicit usage/finish_reason (usage: null omits the field). */
      text: string;
      usage?: { prompt_tokens: number; completion_tokens: number } | null;
      finishReason?: string;
      /** Sent as message.reasoning (vLLM/Ollama style). */
      reasoning?: string;
    }
  | { status: number; retryAfter?: number | string; retryAfterMs?: number; body?: unknown }
  | { delayMs: number; then?: FakeReply }
  | { reset: true }
  | { malformed: true }
  | { raw: string; status?: number; contentType?: string };

export interface FakeRequestInfo {
  body: any;
  messages: { role: string; content: string }[];
  /** 0-based index of this chat request since the server started. */
  index: number;
}

export type FakeReplyFn = (req: FakeRequestInfo) => FakeReply | Promise<FakeReply>;

export interface FakeOpenAI {
  /** Base URL including /v1, e.g. http://127.0.0.1:41234/v1 */
  url: string;
  /** Parsed JSON bodies of POST /v1/chat/completions, in arrival order. */
  requests: any[];
  /** Arrival time (performance.now()) of each entry in `requests`. */
  arrivals: number[];
  /** Highest number of chat requests being handled at once. */
  readonly maxInFlight: number;
  readonly inFlight: number;
  setReply(fn: FakeReplyFn): void;
  close(): Promise<void>;
}

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

function completion(
  model: string,
  text: string,
  usage: { prompt_tokens: number; completion_tokens: number } | null | undefined,
  finishReason: string,
  messages: { content: string }[],
  reasoning?: string,
) {
  const u = usage === null ? undefined : usage ?? {
    prompt_tokens: Math.ceil(messages.map((m) => m.content ?? "").join("\n").length / 4),
    completion_tokens: Math.ceil(text.length / 4),
  };
  return {
    id: `chatcmpl-fake-${Math.random().toString(36).slice(2, 10)}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: text, ...(reasoning !== undefined ? { reasoning } : {}) },
        finish_reason: finishReason,
        logprobs: null,
      },
    ],
    ...(u ? { usage: { ...u, total_tokens: u.prompt_tokens + u.completion_tokens } } : {}),
  };
}

export async function startFakeOpenAI(opts: { reply?: FakeReplyFn } = {}): Promise<FakeOpenAI> {
  let replyFn: FakeReplyFn = opts.reply ?? (() => "ok");
  const requests: any[] = [];
  const arrivals: number[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let inFlight = 0;
  let maxInFlight = 0;
  let closed = false;

  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  async function answer(res: ServerResponse, reply: FakeReply, model: string, messages: { content: string }[]): Promise<void> {
    if (closed || res.destroyed) return;
    if (typeof reply === "string") return sendJson(res, 200, completion(model, reply, undefined, "stop", messages));
    if ("text" in reply) {
      return sendJson(res, 200, completion(model, reply.text, reply.usage, reply.finishReason ?? "stop", messages, reply.reasoning));
    }
    if ("delayMs" in reply) {
      await wait(reply.delayMs);
      return answer(res, reply.then ?? "ok", model, messages);
    }
    if ("reset" in reply) {
      res.socket?.destroy();
      return;
    }
    if ("malformed" in reply) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"id": "chatcmpl-broken", "choices": [');
      return;
    }
    if ("raw" in reply) {
      res.writeHead(reply.status ?? 200, { "content-type": reply.contentType ?? "application/json" });
      res.end(reply.raw);
      return;
    }
    const headers: Record<string, string> = {};
    if (reply.retryAfter !== undefined) headers["retry-after"] = String(reply.retryAfter);
    if (reply.retryAfterMs !== undefined) headers["retry-after-ms"] = String(reply.retryAfterMs);
    if (typeof reply.body === "string") {
      // e.g. an HTML error page from a proxy in front of the model server
      res.writeHead(reply.status, { "content-type": "text/html", ...headers });
      res.end(reply.body);
      return;
    }
    const body = reply.body ?? { error: { message: `fake server error ${reply.status}`, type: "fake_error", code: reply.status } };
    return sendJson(res, reply.status, body, headers);
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = (req.url ?? "").split("?")[0];
      if (req.method === "GET" && path === "/v1/models") {
        return sendJson(res, 200, { object: "list", data: [{ id: "fake-model", object: "model", created: 0, owned_by: "fake" }] });
      }
      if (req.method !== "POST" || path !== "/v1/chat/completions") {
        return sendJson(res, 404, { error: { message: `no route ${req.method} ${path}`, type: "not_found", code: 404 } });
      }
      let body: any;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        return sendJson(res, 400, { error: { message: "request body is not JSON", type: "invalid_request_error" } });
      }
      const index = requests.length;
      requests.push(body);
      arrivals.push(performance.now());
      const messages = Array.isArray(body?.messages) ? body.messages : [];
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      let done = false;
      const finish = () => {
        if (!done) {
          done = true;
          inFlight--;
        }
      };
      res.on("close", finish);
      Promise.resolve()
        .then(() => replyFn({ body, messages, index }))
        .then((reply) => answer(res, reply, String(body?.model ?? "fake-model"), messages))
        .catch((err: unknown) => {
          if (!res.headersSent && !res.destroyed) sendJson(res, 500, { error: { message: `fake reply function threw: ${String(err)}` } });
        });
    });
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    arrivals,
    get maxInFlight() {
      return maxInFlight;
    },
    get inFlight() {
      return inFlight;
    },
    setReply(fn) {
      replyFn = fn;
    },
    close() {
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
