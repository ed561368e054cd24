/**
 * How the trainer turns a task's messages into the policy's prompt, and which tokens end a response:
 *  - a Hugging Face chat policy (tokenizer_config.json has a chat_template): the policy's own template renders
 *    the system/user messages with the assistant header appended, and generation stops at every end-of-turn
 *    id (generation_config.json, config.json, the tokenizer's eos_token);
 *  - any other policy (the project's own checkpoints): message contents joined by newlines plus the run's
 *    separator, stopping at the tokenizer's eos — unchanged from before chat templates existed.
 * The HF files travel with every checkpoint the trainer writes (`files`), so resume and export keep them.
 */
import { ChatTemplate, chatStopIds, type ChatMessage } from "../tokenizer/chat.ts";
import type { PolicyTokenizer } from "./tokenizer.ts";

export interface PolicyFormat {
  readonly kind: "chat-template" | "separator";
  prompt(messages: ChatMessage[]): string;
  /** Token ids that end a response (sampling stops there; they are not part of the response text). */
  readonly stopIds: number[];
  /** HF files to write next to the policy's weights. */
  readonly files: { tokenizerConfig?: object; generationConfig?: object };
}

export function policyFormat(
  ck: { config: object; tokenizerConfig?: Record<string, unknown>; generationConfig?: Record<string, unknown> },
  tok: PolicyTokenizer,
  separator: string,
  source = "tokenizer_config.json",
): PolicyFormat {
  const files = { tokenizerConfig: ck.tokenizerConfig, generationConfig: ck.generationConfig };
  const template = ChatTemplate.fromTokenizerConfig(ck.tokenizerConfig, source);
  if (!template) {
    return { kind: "separator", prompt: (m) => m.map((x) => x.content).join("\n") + separator, stopIds: [tok.eosId], files };
  }
  const idOf = (text: string) => {
    const ids = tok.encode(text);
    return ids.length === 1 ? ids[0] : undefined;
  };
  const stopIds = chatStopIds({ generationConfig: ck.generationConfig, config: ck.config as Record<string, unknown>, tokenizerConfig: ck.tokenizerConfig }, idOf);
  if (!stopIds.includes(tok.eosId)) stopIds.push(tok.eosId);
  return { kind: "chat-template", prompt: (m) => template.render(m, true), stopIds, files };
}
