/**
 * The reward service splits OpenRLHF's query (templated prompt + response) at the markers of the POLICY'S
 * chat template (`mpo serve --policy DIR` / `--chat-template FILE`), read off the published template
 * (test/fixtures/chat-templates, sources in SOURCES.md) rendered with @huggingface/jinja — so a Zephyr-style
 * template (<|user|>\n…</s>\n<|assistant|>\n) is no longer split as Phi-3 with `</s>` left in the response.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { ScriptedChatModel } from "../src/llm/scripted.ts";
import type { ChatRequest } from "../src/llm/types.ts";
import { serveConfigSchema } from "../src/serve/config.ts";
import { startRewardService } from "../src/serve/index.ts";
import { resolveSplit } from "../src/serve/policy-template.ts";
import type { ServerHandle } from "../src/serve/server.ts";
import { markersFromChatTemplate, splitQuery } from "../src/serve/split.ts";
import { ChatTemplate } from "../src/tokenizer/chat.ts";
import { CHAT_TEMPLATES } from "./helpers/hf-policy.ts";

const root = mkdtempSync(join(tmpdir(), "mpo-serve-split-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const handles: ServerHandle[] = [];
afterEach(async () => {
  while (handles.length) await handles.pop()!.close();
});

type Specials = { bos_token?: string; eos_token?: string; pad_token?: string };
const tpl = (file: string, s: Specials) =>
  new ChatTemplate(readFileSync(join(CHAT_TEMPLATES, file), "utf8"), { bos_token: s.bos_token ?? null, eos_token: s.eos_token ?? null, pad_token: s.pad_token ?? null, unk_token: null }, file);

// Published templates with their tokenizer_config.json special tokens; `end` = what a finished generation ends with.
const TEMPLATES: Array<{ file: string; specials: Specials; end: string; system: boolean }> = [
  { file: "qwen2.5-instruct.jinja", specials: { eos_token: "<|im_end|>", pad_token: "<|endoftext|>" }, end: "<|im_end|><|endoftext|>", system: true },
  { file: "llama-3.1-instruct.jinja", specials: { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" }, end: "<|eot_id|>", system: true },
  { file: "smollm2-instruct.jinja", specials: { bos_token: "<|im_start|>", eos_token: "<|im_end|>" }, end: "<|im_end|>", system: true },
  { file: "zephyr-7b-beta.jinja", specials: { bos_token: "<s>", eos_token: "</s>" }, end: "</s>", system: true },
  { file: "mixtral-8x7b-instruct.jinja", specials: { bos_token: "<s>", eos_token: "</s>" }, end: "</s>", system: false },
];
const PROMPT = "Write a haiku about rain.";
const REPLY = "Rain taps on the roof,\nthe gutters hum a low tune.\nPuddles keep the sky.";

describe("split markers read off the policy's chat template", () => {
  it.each(TEMPLATES)("$file: single and multi-turn queries split into the last user turn and the bare response", ({ file, specials, end, system }) => {
    const t = tpl(file, specials);
    const m = markersFromChatTemplate(t, [specials.eos_token!, specials.pad_token ?? ""]);
    const convs = [
      [{ role: "user", content: PROMPT }],
      [...(system ? [{ role: "system", content: "Be brief." }] : []), { role: "user", content: "Hi." }, { role: "assistant", content: "Hello! How can I help?" }, { role: "user", content: PROMPT }],
    ];
    for (const conv of convs) {
      const prompt = t.render(conv, true);
      const query = prompt + REPLY + end;
      expect(splitQuery(query, m), `${file}: markers`).toEqual({ prompt: PROMPT, response: REPLY });
      expect(splitQuery(query, m, prompt), `${file}: with OpenRLHF's prompts`).toEqual({ prompt: PROMPT, response: REPLY });
    }
  });

  it("Zephyr: the markers are Zephyr's (not Phi-3's), and `</s>` never reaches the judge", () => {
    const t = tpl("zephyr-7b-beta.jinja", { bos_token: "<s>", eos_token: "</s>" });
    const m = markersFromChatTemplate(t, ["</s>"]);
    expect(m).toMatchObject({ userStart: "<|user|>", assistantStart: "</s>\n<|assistant|>", turnEnd: "</s>", endTokens: ["</s>"] });
    const query = t.render([{ role: "system", content: "Be brief." }, { role: "user", content: PROMPT }], true) + REPLY + "</s>";
    expect(query).toBe(`<|system|>\nBe brief.</s>\n<|user|>\n${PROMPT}</s>\n<|assistant|>\n${REPLY}</s>`);
    expect(splitQuery(query, m).response).toBe(REPLY);
    // Without the template, `auto` now tells Zephyr from Phi-3 by its end-of-turn token (it used to leave `</s>`).
    expect(splitQuery(query, "auto")).toEqual({ prompt: PROMPT, response: REPLY });
    const phi3 = `<|user|>\n${PROMPT}<|end|>\n<|assistant|>\n${REPLY}<|end|>\n<|endoftext|>`;
    expect(splitQuery(phi3, "auto")).toEqual({ prompt: PROMPT, response: REPLY });
  });

  it("a template that cannot be read for markers is a named error", () => {
    const t = new ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}", { bos_token: null, eos_token: null, pad_token: null, unk_token: null }, "plain.jinja");
    expect(() => markersFromChatTemplate(t)).toThrow(/plain\.jinja: chat template adds no generation prompt/);
  });
});

/** A tokenizer directory as published: tokenizer_config.json with the chat template and special tokens. */
function policyDir(name: string, file: string, specials: Specials): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: readFileSync(join(CHAT_TEMPLATES, file), "utf8"), ...specials, add_bos_token: true }));
  return dir;
}

describe("mpo serve --policy DIR / --chat-template FILE", () => {
  it("the service splits a Zephyr policy's queries at Zephyr's markers: the judge sees the bare response", async () => {
    const seen: string[] = [];
    const judge = new ScriptedChatModel((req: ChatRequest) => {
      seen.push(req.messages.map((x) => x.content).join("\n"));
      return /integer score/i.test(req.messages[req.messages.length - 1].content) ? "3" : "Fine.";
    });
    const runDir = join(root, "run-zephyr");
    const rubric = join(root, "rubric.txt");
    writeFileSync(rubric, "<rubric><item>Imagery: how vivid the poem is. Score from 0 to 5.</item></rubric>");
    const logs: string[] = [];
    const cfg = serveConfigSchema.parse({
      protocol: "hardened", runDir, rubric, port: 0, judge: { baseURL: "http://127.0.0.1:9/v1", model: "m" },
      policy: policyDir("zephyr", "zephyr-7b-beta.jinja", { bos_token: "<s>", eos_token: "</s>" }),
    });
    const h = await startRewardService(cfg, { judge, log: (l) => logs.push(l) });
    handles.push(h);
    expect(logs.join("\n")).toContain('split: markers of the chat template in');
    expect(logs.join("\n")).toContain('response after "</s>\\n<|assistant|>"');
    const query = `<|user|>\n${PROMPT}</s>\n<|assistant|>\n${REPLY}</s>`;
    const r = await fetch(h.url + "/get_reward", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query: [query], prompts: [], labels: [null] }) });
    expect(r.status).toBe(200);
    expect(seen.length).toBeGreaterThan(0);
    for (const text of seen) {
      expect(text).toContain(REPLY);
      expect(text).not.toContain("</s>");
      expect(text).not.toContain("<|assistant|>");
    }
  });

  it("resolves: explicit split wins; --chat-template overrides the policy's; missing template or special tokens are named errors", async () => {
    const qwen = policyDir("qwen", "qwen2.5-instruct.jinja", { eos_token: "<|im_end|>", pad_token: "<|endoftext|>" });
    const q = await resolveSplit({ split: "auto", policy: qwen });
    expect(q.split).toMatchObject({ userStart: "<|im_start|>user", assistantStart: "<|im_end|>\n<|im_start|>assistant", endTokens: ["<|im_end|>", "<|endoftext|>"] });
    expect((await resolveSplit({ split: "chatml", policy: qwen })).split).toBe("chatml");
    const z = await resolveSplit({ split: "auto", policy: qwen, chatTemplate: join(CHAT_TEMPLATES, "zephyr-7b-beta.jinja") });
    expect(z.split).toMatchObject({ userStart: "<|user|>", assistantStart: "<|im_end|>\n<|assistant|>" }); // Zephyr's markup around Qwen's eos_token
    // A template without special tokens needs no tokenizer.
    const plain = join(root, "plain.jinja");
    writeFileSync(plain, "{% for m in messages %}### {{ m.role }}:\n{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}### assistant:\n{% endif %}");
    const p = await resolveSplit({ split: "auto", chatTemplate: plain });
    expect(splitQuery("### user:\nQ?\n### assistant:\nA.", p.split)).toEqual({ prompt: "Q?", response: "A." });
    await expect(resolveSplit({ split: "auto", chatTemplate: join(CHAT_TEMPLATES, "zephyr-7b-beta.jinja") })).rejects.toThrow(/uses the tokenizer's special tokens.*add --policy DIR/);
    const bare = join(root, "bare");
    mkdirSync(bare);
    writeFileSync(join(bare, "tokenizer_config.json"), JSON.stringify({ eos_token: "</s>" }));
    await expect(resolveSplit({ split: "auto", policy: bare })).rejects.toThrow(/has no chat template.*--chat-template FILE/);
  });
});
