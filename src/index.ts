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
export type { Split, TaskRecord, TaskDefinition, TaskRewardSpec } from "./tasks/types.ts";
export { getTask, listTasks, registerTask, getTaskSpec, type TaskInfo } from "./tasks/registry.ts";
export { buildTask, defaultDataDir, type TaskSpec, type TaskOptions, type DataSource, type FieldMapping } from "./tasks/spec.ts";
export { loadTaskConfig, taskConfigSchema } from "./tasks/config.ts";
export { clusterTexts, assignCluster } from "./tasks/cluster.ts";
export { readJsonlFile, readCsvFile, readParquetFile, readJsonFile, readTable, getField, DataFileError } from "./data/files.ts";
export { hfDataset, hfCachePath } from "./data/hf.ts";
export { runEloTournament, eloUpdate, eloExpected, parseWinner, eloScoresJson, type EloSystem, type EloOptions, type EloResult, type EloMatch } from "./eval/elo.ts";
export { fitBradleyTerry, type BradleyTerryResult, type PairOutcome } from "./eval/bradley-terry.ts";
export { runEloReport, formatEloTable } from "./eval/report.ts";
export { loadGenerationFile, systemNameFromFile } from "./eval/runs.ts";
export { barChartSvg } from "./eval/plot-svg.ts";
export { rougeScore, rougeCorpus, rougeTokenize, type RougeScore } from "./eval/rouge.ts";
export { accuracyFor, type AccuracyResult, type AnswerChecker } from "./eval/accuracy.ts";
