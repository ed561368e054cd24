/**
 * Library entry point: the pieces of MPO usable from user code. See README "Library API".
 */
export * from "./llm/types.ts";
export * from "./rubric/types.ts";
export * from "./judge/types.ts";
export { Rng } from "./util/rng.ts";
export { UserError, ConfigError } from "./util/errors.ts";
export { writeFileAtomic, writeJsonAtomic, appendJsonl, readJsonl } from "./util/atomic.ts";
export { loadConfig, validate, readConfigFile } from "./config/load.ts";
export * from "./llm/index.ts";
export * from "./rubric/format.ts";
export * from "./rubric/store.ts";
export * from "./rubric/guidelines.ts";
export * from "./rubric/diff.ts";
export * from "./verify/index.ts";
