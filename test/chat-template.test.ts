/**
 * Chat templates: the published chat_template strings of Qwen2.5-Instruct, Llama-3.1-Instruct and
 * SmolLM2-Instruct (test/fixtures/chat-templates, sources in SOURCES.md) rendered for system + user +
 * generation prompt, compared with the exact text transformers produces; and `mpo sample --chat` on a tiny
 * qwen2 policy: the prompt is the policy's own template, generation stops at generation_config's end ids,
 * and the JSON output's log-probs are the model's teacher-forced scores of the sampled ids.
 */
import { describe, expect, it, afterEach } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChatTemplate, chatStopIds } from "../src/tokenizer/chat.ts";
import { runSample } from "../src/cli/commands/sample.ts";
import { loadCheckpoint } from "../src/engine/io/checkpoint.ts";
import { TransformerLM } from "../src/engine/index.ts";
import { CHAT_TEMPLATES, makeHfChatPolicy } from "./helpers/hf-policy.ts";
import { policyFormat } from "../src/rl/policy-format.ts";
import { tokenizerFromJson } from "../src/rl/tokenizer.ts";

const tpl = (file: string, specials: Partial<ChatTemplate["specials"]> = {}) =>
  new ChatTemplate(readFileSync(join(CHAT_TEMPLATES, file), "utf8"), { bos_token: null, eos_token: null, pad_token: null, unk_token: null, ...specials });

const SYS_USER = [
  { role: "system", content: "You are a careful essay grader." },
  { role: "user", content: "Write two sentences about trees." },
];

describe("published chat templates render exactly", () => {
  it("Qwen2.5-Instruct: system + user + generation prompt; default system when none is given", () => {
    const t = tpl("qwen2.5-instruct.jinja", { eos_token: "<|im_end|>", pad_token: "<|endoftext|>" });
    expect(t.render(SYS_USER)).toBe(
      "<|im_start|>system\nYou are a careful essay grader.<|im_end|>\n<|im_start|>user\nWrite two sentences about trees.<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(t.render([SYS_USER[1]])).toBe(
      "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nWrite two sentences about trees.<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(t.render([...SYS_USER, { role: "assistant", content: "Trees cool cities." }], false)).toBe(
      "<|im_start|>system\nYou are a careful essay grader.<|im_end|>\n<|im_start|>user\nWrite two sentences about trees.<|im_end|>\n<|im_start|>assistant\nTrees cool cities.<|im_end|>\n",
    );
  });

  it("Llama-3.1-Instruct: bos, dated system header (fixed fallback date), trimmed contents", () => {
    const t = tpl("llama-3.1-instruct.jinja", { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" });
    expect(t.render([SYS_USER[0], { role: "user", content: "  Write two sentences about trees.\n" }])).toBe(
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n" +
        "You are a careful essay grader.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWrite two sentences about trees.<|eot_id|>" +
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    );
  });

  it("SmolLM2-Instruct: given system, and its own default system", () => {
    const t = tpl("smollm2-instruct.jinja", { bos_token: "<|im_start|>", eos_token: "<|im_end|>" });
    expect(t.render(SYS_USER)).toBe(
      "<|im_start|>system\nYou are a careful essay grader.<|im_end|>\n<|im_start|>user\nWrite two sentences about trees.<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(t.render([SYS_USER[1]])).toBe(
      "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWrite two sentences about trees.<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  it("bad templates and configs are named errors; a named-template list uses 'default'", () => {
    expect(() => new ChatTemplate("{% for m in messages %}", { bos_token: null, eos_token: null, pad_token: null, unk_token: null })).toThrow(/chat_template/);
    expect(() => ChatTemplate.fromTokenizerConfig({ chat_template: 5 })).toThrow(/field 'chat_template'/);
    expect(ChatTemplate.fromTokenizerConfig({})).toBeUndefined();
    const t = ChatTemplate.fromTokenizerConfig({ chat_template: [{ name: "tool_use", template: "X" }, { name: "default", template: "{{ messages[0].content }}!" }], eos_token: { content: "</s>" } });
    expect(t?.render([{ role: "user", content: "hi" }])).toBe("hi!");
    expect(t?.specials.eos_token).toBe("</s>");
  });

  it("stop ids: generation_config list, then config, then the tokenizer's eos_token", () => {
    const ids = chatStopIds(
      { generationConfig: { eos_token_id: [151645, 151643] }, config: { eos_token_id: 151643 }, tokenizerConfig: { eos_token: "<|im_end|>" } },
      (t) => (t === "<|im_end|>" ? 151645 : undefined),
    );
    expect(ids).toEqual([151645, 151643]);
    expect(chatStopIds({ config: { eos_token_id: 7 }, tokenizerConfig: { eos_token: { content: "<e>" } } }, () => 9)).toEqual([7, 9]);
  });
});

describe("mpo sample --chat on a Hugging Face chat policy", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("renders the policy's template, greedy ids are scored by the model, and generation_config end ids stop it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mpo-chat-"));
    dirs.push(dir);
    const { tokenizer } = makeHfChatPolicy(dir);
    const r = await runSample({ model: dir, prompt: "", chat: "Write two sentences about trees.", system: "Be brief.", temperature: 0, maxNewTokens: 8 });
    expect(r.prompt).toBe("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWrite two sentences about trees.<|im_end|>\n<|im_start|>assistant\n");
    expect(r.promptIds).toEqual(tokenizer.encode(r.prompt));
    expect(r.promptIds.filter((i) => i === tokenizer.specialId("<|im_start|>")).length).toBe(3);
    expect(r.ids.length).toBeGreaterThan(0);
    // The reported log-probs are the model's own scores of prompt + sampled ids (teacher forced).
    const ck = loadCheckpoint(dir);
    const model = TransformerLM.fromParams(ck.config, ck.tensors);
    const seq = [...r.promptIds, ...r.ids];
    const tokens = Int32Array.from(seq);
    const targets = Int32Array.from(seq.map((_, i) => (i >= r.promptIds.length - 1 && i < seq.length - 1 ? seq[i + 1] : -1)));
    const lp = model.score(tokens, targets, 1, seq.length).logprobs;
    r.logprobs.forEach((x, i) => expect(x).toBeCloseTo(lp[r.promptIds.length - 1 + i], 4));

    // Make the first greedy token an end-of-turn id in generation_config.json: generation stops right there.
    const genPath = join(dir, "generation_config.json");
    const gen = JSON.parse(readFileSync(genPath, "utf8"));
    writeFileSync(genPath, JSON.stringify({ ...gen, eos_token_id: [r.ids[0], 0] }));
    const r2 = await runSample({ model: dir, prompt: "", chat: "Write two sentences about trees.", system: "Be brief.", temperature: 0, maxNewTokens: 8 });
    expect(r2.ids).toEqual([r.ids[0]]);
    expect(r2.samples[0].finished).toBe(true);
    expect(r2.text).toBe("");
  });

  it("--chat on a policy without a chat template, and --system without --chat, are clear errors", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mpo-chat-"));
    dirs.push(dir);
    makeHfChatPolicy(dir);
    rmSync(join(dir, "tokenizer_config.json"));
    await expect(runSample({ model: dir, prompt: "", chat: "hi" })).rejects.toThrow(/no chat_template in tokenizer_config\.json; use --prompt/);
    await expect(runSample({ model: dir, prompt: "hi", system: "x" })).rejects.toThrow(/--system needs --chat/);
  });
});

describe("trainer prompt format", () => {
  it("a chat policy's prompts come from its template and stop at all end ids; other policies keep the separator", () => {
    const dir = mkdtempSync(join(tmpdir(), "mpo-chat-"));
    try {
      const { tokenizer } = makeHfChatPolicy(dir);
      const ck = loadCheckpoint(dir);
      const tok = tokenizerFromJson(ck.tokenizerJson, "tokenizer.json", 2);
      const f = policyFormat(ck, tok, " <sep>");
      expect(f.kind).toBe("chat-template");
      expect(f.prompt(SYS_USER)).toBe(
        "<|im_start|>system\nYou are a careful essay grader.<|im_end|>\n<|im_start|>user\nWrite two sentences about trees.<|im_end|>\n<|im_start|>assistant\n",
      );
      expect(f.stopIds).toEqual([tokenizer.specialId("<|im_end|>"), tokenizer.specialId("<|endoftext|>")]);
      const plain = policyFormat({ config: ck.config }, tok, " <sep>");
      expect(plain.kind).toBe("separator");
      expect(plain.prompt(SYS_USER)).toBe("You are a careful essay grader.\nWrite two sentences about trees. <sep>");
      expect(plain.stopIds).toEqual([2]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
