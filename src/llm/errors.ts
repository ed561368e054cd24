/**
 * The one error type a chat call fails with, so callers (judge, reward service, CLI) can tell a dead server
 * from a bad request from a cancelled call without parsing messages. It is a UserError: the CLI prints
 * the message (which names the server, the tries and the cause) without a stack trace.
 */
import { UserError } from "../util/errors.ts";

export type LlmErrorKind = "timeout" | "http" | "connection" | "bad-response" | "aborted" | "gave-up";

export interface LlmErrorInit {
  kind: LlmErrorKind;
  message: string;
  endpoint: string;
  tries: number;
  status?: number;
  cause?: unknown;
  /** The call's wall-clock budget (ChatRequest.budgetMs), not the server, ended the last try. */
  budgetCut?: boolean;
}

export class LlmError extends UserError {
  readonly kind: LlmErrorKind;
  readonly status?: number;
  readonly tries: number;
  readonly endpoint: string;
  /**
   * True when the caller's budget ran out during the last try: the message then names the last error the
   * server itself gave (if any), and a caller that tracks the judge's health should not count the cut as news.
   */
  readonly budgetCut: boolean;

  constructor(init: LlmErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "LlmError";
    this.kind = init.kind;
    this.status = init.status;
    this.tries = init.tries;
    this.endpoint = init.endpoint;
    this.budgetCut = init.budgetCut === true;
  }

  /** Whether another try could succeed (used by the retry loop; exported for callers that retry at a higher level). */
  get retryable(): boolean {
    if (this.kind === "timeout" || this.kind === "connection" || this.kind === "bad-response") return true;
    if (this.kind === "http" && this.status !== undefined) return isRetryableStatus(this.status);
    return false;
  }
}

/** Statuses worth retrying: request timeout, conflict/lock, rate limit, server errors. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}
