/**
 * The sandbox's built-in essay world: topics, instruction types and the few hundred writing prompts made
 * from them. Written for this project (no external data), so `npm start` runs anywhere.
 *
 * Each topic carries the vocabulary a writer uses on it (keywords, pros, cons, a story setting); the
 * essay writer (./essay-writer.ts) builds essays of varying quality from it and the oracle (./oracle.ts)
 * uses it for evaluation only.
 */
import { Rng } from "../util/rng.ts";
import type { TaskRecord } from "../tasks/types.ts";

export interface Topic {
  id: string;
  /** Noun phrase used in prompts and sentences, e.g. "public libraries". */
  subject: string;
  /** A claim one can argue for or against. */
  claim: string;
  keywords: string[];
  pros: string[];
  cons: string[];
  /** A place/situation for stories. */
  setting: string;
}

const T = (id: string, subject: string, claim: string, keywords: string, pros: string[], cons: string[], setting: string): Topic => ({
  id,
  subject,
  claim,
  keywords: keywords.split(" "),
  pros,
  cons,
  setting,
});

export const TOPICS: Topic[] = [
  T("libraries", "public libraries", "cities should spend more money on public libraries", "books readers librarians shelves reading community",
    ["they give every reader free access to books", "they offer quiet rooms where students can study"],
    ["many readers now prefer digital books", "the buildings are expensive to maintain"], "a small library on a rainy afternoon"),
  T("homework", "homework", "schools should stop giving homework", "students teachers practice evenings grades learning",
    ["practice at home helps students remember lessons", "it teaches students to plan their evenings"],
    ["long assignments leave little time for rest", "students without help at home fall behind"], "a kitchen table covered with notebooks"),
  T("cycling", "cycling to work", "cities should build more bike lanes", "bikes lanes riders traffic commute streets",
    ["riders get exercise on the way to work", "fewer cars means less traffic in the streets"],
    ["winter weather makes riding hard", "lanes take space away from buses"], "a busy street at rush hour"),
  T("gardening", "community gardens", "every neighborhood needs a community garden", "plants soil vegetables neighbors seeds harvest",
    ["neighbors meet while they tend the plants", "fresh vegetables become cheap and close"],
    ["the soil in cities is often polluted", "gardens need volunteers every week"], "a vacant lot turned into rows of vegetables"),
  T("robots", "robots in factories", "robots will create more jobs than they destroy", "machines workers factories automation jobs skills",
    ["machines take over dangerous tasks", "new jobs appear for workers who repair machines"],
    ["many workers lose their jobs quickly", "training for new skills takes years"], "a factory floor at night"),
  T("music", "music education", "music lessons should be required in schools", "songs instruments practice students rhythm teachers",
    ["playing instruments trains memory and patience", "students learn to work together in a band"],
    ["lessons cost time that math could use", "not every student enjoys music"], "a school hall before a concert"),
  T("oceans", "ocean pollution", "plastic bags should be banned", "plastic oceans beaches fish waste recycling",
    ["less plastic reaches the beaches", "fish and birds are protected from waste"],
    ["bans hurt small shops at first", "other bags also need energy to make"], "a beach after a storm"),
  T("phones", "smartphones for children", "children under twelve should not own smartphones", "phones children screens parents apps attention",
    ["parents can reach their children at any time", "apps can teach languages and math"],
    ["screens pull attention away from play", "children see content meant for adults"], "a playground where every child stares at a screen"),
  T("travel", "travel abroad", "every student should spend a year abroad", "travel countries languages culture students journey",
    ["students learn a new language quickly", "living in another culture builds patience"],
    ["a year abroad is expensive for families", "some students feel lonely far from home"], "a train station in a foreign city"),
  T("sleep", "sleep", "school should start later in the morning", "sleep rest mornings teenagers health schedules",
    ["teenagers who sleep more pay better attention", "rested students are healthier"],
    ["later schedules clash with parents' work", "sports practice would end after dark"], "an alarm clock ringing before sunrise"),
  T("cooking", "home cooking", "people should cook at home instead of eating out", "meals kitchen recipes ingredients family food",
    ["home meals are cheaper and healthier", "cooking together brings a family closer"],
    ["cooking takes time after a long day", "restaurants support local jobs"], "a crowded kitchen before a holiday dinner"),
  T("space", "space exploration", "governments should fund missions to Mars", "rockets planets astronauts missions science stars",
    ["missions lead to new science and tools", "exploring planets inspires young people"],
    ["rockets cost money that schools need", "astronauts face serious dangers"], "a launch pad before dawn"),
  T("zoos", "zoos", "zoos do more good than harm", "animals zoos species keepers cages conservation",
    ["zoos protect species that are disappearing", "visitors learn to care about animals"],
    ["cages limit how animals move", "some animals suffer far from their habitat"], "a zoo on a quiet winter morning"),
  T("voting", "voting", "voting should be mandatory", "voters elections citizens democracy ballots government",
    ["every citizen's voice is counted", "governments must listen to all voters"],
    ["forced voters may choose at random", "freedom includes the choice not to vote"], "a polling station in a school gym"),
  T("forests", "forests", "cities should plant a tree for every new building", "trees forests shade leaves air roots",
    ["trees clean the air and give shade", "green streets make people calmer"],
    ["roots damage pipes and sidewalks", "trees need water during dry summers"], "a forest path after the first snow"),
  T("sports", "team sports", "team sports teach more than any classroom", "teams players coaches games training victory",
    ["players learn to trust each other", "coaches teach discipline through training"],
    ["injuries can stop a young player", "losing games can hurt confidence"], "a muddy field during the final game"),
  T("money", "saving money", "teenagers should learn to manage money in school", "money savings budget banks spending interest",
    ["a budget prevents debt later in life", "savings grow with interest over time"],
    ["lessons about banks can be boring", "families may teach money better than schools"], "a teenager counting coins at a bank counter"),
  T("art", "public art", "cities should pay artists to paint murals", "artists murals paint walls colors streets",
    ["murals bring color to gray streets", "artists earn a living from their work"],
    ["not everyone likes the same paintings", "paint fades and needs repair"], "a wall being painted on a summer evening"),
  T("energy", "solar energy", "every new house should have solar panels", "solar panels energy sunlight electricity roofs",
    ["panels turn sunlight into cheap electricity", "clean energy reduces pollution"],
    ["panels are expensive to install", "cloudy regions get little sunlight"], "a roof covered with panels at noon"),
  T("pets", "pets", "every family should have a pet", "pets dogs cats owners care animals",
    ["pets teach children responsibility", "dogs keep their owners active"],
    ["pets need care every single day", "some people are allergic to cats"], "a shelter full of waiting dogs"),
  T("museums", "free museums", "museums should be free for everyone", "museums history exhibits visitors paintings culture",
    ["free entry lets every family see history", "visitors return and learn more each time"],
    ["museums need ticket money to survive", "crowds can damage old exhibits"], "an empty museum hall after closing time"),
  T("games", "video games", "video games can be good for learning", "games players screens puzzles skills levels",
    ["puzzles in games train problem solving", "players learn to keep trying after failure"],
    ["long gaming sessions replace exercise", "some games reward violence"], "a bedroom lit by a glowing screen"),
  T("uniforms", "school uniforms", "students should wear school uniforms", "uniforms students clothes schools rules fashion",
    ["uniforms end competition over clothes", "mornings are simpler for families"],
    ["uniforms limit how students express themselves", "buying uniforms costs families money"], "a school gate on the first day of term"),
  T("water", "clean water", "clean water should be free for every household", "water rivers pipes drinking wells health",
    ["clean drinking water prevents disease", "free water helps poor households"],
    ["free water may be wasted", "pipes and wells need money to repair"], "a village gathered around a new well"),
  T("languages", "learning languages", "every child should learn two foreign languages", "languages words grammar speakers vocabulary culture",
    ["new languages open doors to other cultures", "speakers of many languages find more jobs"],
    ["grammar lessons take years", "translation tools make learning less needed"], "a classroom where nobody shares a language"),
  T("farming", "local farming", "people should buy food from local farms", "farms farmers crops markets food fields",
    ["local farmers earn a fair price", "fresh crops travel short distances"],
    ["local food can cost more", "some crops cannot grow in every climate"], "a farmers market on a Saturday morning"),
  T("volunteering", "volunteering", "students should volunteer in their community", "volunteers community help service neighbors charity",
    ["volunteers learn how their community works", "helping neighbors builds trust"],
    ["forced service is not real charity", "students already have little free time"], "a food bank during a cold week"),
  T("cars", "electric cars", "cities should ban gasoline cars downtown", "cars electric batteries fuel drivers pollution",
    ["electric cars make the air cleaner", "drivers save money on fuel"],
    ["batteries need rare metals", "charging stations are still few"], "a parking garage full of charging cables"),
  T("reading", "reading fiction", "reading novels makes people kinder", "novels stories characters readers fiction imagination",
    ["stories let readers feel what characters feel", "fiction trains imagination"],
    ["kindness comes from real people, not novels", "some readers only escape into fiction"], "a reader lost in a novel on a long bus ride"),
  T("exams", "exams", "final exams should be replaced by projects", "exams tests projects students grades pressure",
    ["projects show what students can build", "less pressure means more real learning"],
    ["exams are fair because everyone gets the same test", "projects are harder to grade"], "a silent hall during a final exam"),
];

export interface InstructionType {
  id: string;
  /** Template for the prompt; {subject} and {claim} and {setting} are replaced. */
  template: string;
  kind: "argue-for" | "argue-against" | "explain" | "story" | "describe" | "compare";
}

export const INSTRUCTIONS: InstructionType[] = [
  { id: "argue-for", kind: "argue-for", template: "Write a short essay arguing that {claim}." },
  { id: "argue-against", kind: "argue-against", template: "Write a short essay arguing against the claim that {claim}." },
  { id: "explain", kind: "explain", template: "Explain to a young reader why {subject} matter to everyday life." },
  { id: "story", kind: "story", template: "Tell a short story set in {setting}." },
  { id: "describe", kind: "describe", template: "Describe the role of {subject} in your town." },
  { id: "compare", kind: "compare", template: "Discuss the benefits and drawbacks of {subject}." },
  { id: "letter", kind: "argue-for", template: "Write a letter to the mayor explaining why {claim}." },
  { id: "opinion", kind: "compare", template: "Give your opinion on {subject}, with reasons on both sides." },
  { id: "memory", kind: "story", template: "Write a personal story about {subject}." },
  { id: "guide", kind: "explain", template: "Write a short guide for beginners about {subject}." },
];

export interface SandboxPrompt extends TaskRecord {
  topic: string;
  instruction: string;
}

export function renderInstruction(instr: InstructionType, topic: Topic): string {
  return instr.template.replace("{subject}", topic.subject).replace("{claim}", topic.claim).replace("{setting}", topic.setting);
}

/** All prompts (topics × instruction types), split 80/20 train/test by a fixed seeded shuffle. */
export function sandboxPrompts(split: "train" | "test" | "all" = "all"): SandboxPrompt[] {
  const all: SandboxPrompt[] = [];
  for (const topic of TOPICS) {
    for (const instr of INSTRUCTIONS) {
      all.push({ id: `${topic.id}.${instr.id}`, prompt: renderInstruction(instr, topic), topic: topic.id, instruction: instr.id, group: topic.id });
    }
  }
  const order = new Rng("sandbox-split").shuffle(all.map((_, i) => i));
  const nTest = Math.round(all.length * 0.2);
  const testIdx = new Set(order.slice(0, nTest));
  if (split === "all") return all;
  return all.filter((_, i) => (split === "test") === testIdx.has(i));
}

export function topicById(id: string): Topic {
  const t = TOPICS.find((x) => x.id === id);
  if (!t) throw new Error(`unknown sandbox topic '${id}'`);
  return t;
}

export function instructionById(id: string): InstructionType {
  const t = INSTRUCTIONS.find((x) => x.id === id);
  if (!t) throw new Error(`unknown sandbox instruction '${id}'`);
  return t;
}
