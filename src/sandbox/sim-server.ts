/**
 * `mpo sim-server`: the simulated judges served as an OpenAI-compatible chat-completions endpoint, so the
 * sandbox (or a user) can drive them through the real HTTP client exactly as it would drive vLLM.
 */
import Fastify, { type FastifyInstance } from "fastify";
import { z } from "zod";
import { loadTemplates } from "../judge/templates.ts";
import { DEFAULT_ELO_JUDGE, type EloJudgeSettings } from "./sim/elo-judge.ts";
import { SimulatedJudgeModel, SimUnrecognisedError } from "./sim/sim-model.ts";

const chatBody = z.object({
  model: z.string().optional(),
  messages: z
    .array(z.object({ role: z.enum(["system", "user", "assistant"]), content: z.union([z.string(), z.array(z.object({ type: z.string(), text: z.string().optional() }))]) }))
    .min(1),
  stream: z.boolean().optional(),
});

export async function startSimServer(
  opts: {
    host?: string;
    port?: number;
    seed?: number;
    elo?: Partial<EloJudgeSettings>;
    /** Template overlay the clients use (`--templates DIR`), so their prompts are recognised. */
    templatesDir?: string;
  } = {},
): Promise<{ app: FastifyInstance; url: string }> {
  const model = new SimulatedJudgeModel("both", opts.seed ?? 0, { ...DEFAULT_ELO_JUDGE, ...opts.elo }, opts.templatesDir ? loadTemplates(opts.templatesDir) : undefined);
  const app = Fastify({ logger: false, bodyLimit: 16 * 1024 * 1024 });
  let counter = 0;
  app.get("/v1/models", async () => ({ object: "list", data: [{ id: "mpo-sim-judge", object: "model", created: 0, owned_by: "mpo" }] }));
  app.get("/health", async () => ({ ok: true }));
  app.post("/v1/chat/completions", async (req, reply) => {
    const parsed = chatBody.safeParse(req.body);
    if (!parsed.success) {
      const iss = parsed.error.issues[0];
      return reply.code(400).send({ error: { message: `field '${iss.path.join(".")}': ${iss.message}`, type: "invalid_request_error" } });
    }
    if (parsed.data.stream) return reply.code(400).send({ error: { message: "streaming is not supported by the simulated judge", type: "invalid_request_error" } });
    const messages = parsed.data.messages.map((m) => ({ role: m.role, content: typeof m.content === "string" ? m.content : m.content.map((c) => c.text ?? "").join("") }));
    let r;
    try {
      r = await model.chat({ messages });
    } catch (err) {
      // Not a plausible text: an error naming what was not understood (a client gets a 400 it does not retry).
      if (err instanceof SimUnrecognisedError) return reply.code(400).send({ error: { message: `mpo sim-server: ${err.message}`, type: "invalid_request_error", code: "unrecognised_request" } });
      throw err;
    }
    return {
      id: `chatcmpl-sim-${++counter}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: parsed.data.model ?? "mpo-sim-judge",
      choices: [{ index: 0, message: { role: "assistant", content: r.text }, finish_reason: "stop" }],
      usage: { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens },
    };
  });
  const address = await app.listen({ host: opts.host ?? "127.0.0.1", port: opts.port ?? 0 });
  return { app, url: `${address.replace("[::1]", "127.0.0.1")}/v1` };
}
