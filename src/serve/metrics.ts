/** Prometheus metrics of the reward service (prom-client, one registry per service instance). */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Stage, UsageByStage } from "../llm/types.ts";

export class ServiceMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: "mpo_requests_total", help: "HTTP requests by route and status", labelNames: ["route", "status"], registers: [this.registry] });
  readonly latency = new Histogram({
    name: "mpo_request_duration_seconds",
    help: "Request latency by route",
    labelNames: ["route"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });
  readonly samples = new Counter({ name: "mpo_samples_scored_total", help: "Samples scored", registers: [this.registry] });
  readonly judgeCalls = new Counter({ name: "mpo_judge_calls_total", help: "LLM calls by stage", labelNames: ["stage"], registers: [this.registry] });
  readonly judgeFailures = new Counter({ name: "mpo_judge_failures_total", help: "Failed LLM calls by stage", labelNames: ["stage"], registers: [this.registry] });
  readonly judgeTokens = new Counter({ name: "mpo_judge_tokens_total", help: "LLM tokens by stage and kind", labelNames: ["stage", "kind"], registers: [this.registry] });
  readonly rubricVersion = new Gauge({ name: "mpo_rubric_version", help: "Rubric version currently scoring", registers: [this.registry] });
  readonly metaSteps = new Counter({ name: "mpo_meta_steps_total", help: "Meta steps by result", labelNames: ["result"], registers: [this.registry] });
  readonly errors = new Counter({ name: "mpo_errors_total", help: "Errors by kind", labelNames: ["kind"], registers: [this.registry] });

  addUsage(u: UsageByStage): void {
    for (const [stage, s] of Object.entries(u) as [Stage, NonNullable<UsageByStage[Stage]>][]) {
      if (!s) continue;
      this.judgeCalls.inc({ stage }, s.calls);
      if (s.failures) this.judgeFailures.inc({ stage }, s.failures);
      this.judgeTokens.inc({ stage, kind: "prompt" }, s.promptTokens);
      this.judgeTokens.inc({ stage, kind: "completion" }, s.completionTokens);
    }
  }
}
