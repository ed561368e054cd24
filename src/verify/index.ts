/** Rule verifiers: boxed-answer extraction, MATH answer equivalence, ethics verdict tags, length checks. */
export { allBoxed, balancedGroup, boxedAnswer, firstBoxed, lastBoxed, type AnswerBox } from "./boxed.ts";
export { referenceAnswersEqual, referenceNormalize } from "./reference-equiv.ts";
export { mathAnswersEqual, normalizeMathAnswer, numericValue } from "./math-equiv.ts";
export { extractVerdict, type Verdict } from "./verdict.ts";
export { isTooShort, wordCount } from "./reasoning.ts";
