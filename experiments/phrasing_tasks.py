"""A held-out 5-task sequence written the way users write prompts: many phrasings per task, terse and chatty.

    .venv/bin/python experiments/phrasing_tasks.py --output work/phrasing    # writes JSONL + tasks.yaml
    forgetless continual run --config work/phrasing/tasks.yaml --output runs/phrasing

Written for issue 14 BEFORE any switch was tuned on it (so it is held out from the switch's design), and
unlike the built-in suite: no task shares a template family with a built-in one. Tasks, in order:
`antonym` (word -> its opposite), `past_tense` (verb -> simple past), `addition` (two numbers -> sum),
`letter_count` (word -> number of letters), `unit_convert` (km/kg/h/m -> m/g/min/cm). Each task draws one
of 8-10 phrasings per record, including lower-case, no-question-mark and chatty ones. Train and eval
share no item. 120 train records (the `continual run` default the issue measured) and 30 eval per task.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path


def words(text: str) -> list[str]:
    return text.split()


ANTONYMS = words("""hot:cold big:small fast:slow happy:sad light:dark open:closed early:late full:empty hard:soft
high:low long:short loud:quiet old:young rich:poor strong:weak thick:thin wet:dry up:down win:lose
push:pull buy:sell give:take love:hate true:false clean:dirty cheap:expensive deep:shallow easy:difficult
first:last heavy:light inside:outside left:right near:far noisy:silent polite:rude safe:dangerous
sharp:blunt smooth:rough sweet:sour tall:short tight:loose wide:narrow wild:tame brave:cowardly
ancient:modern arrive:depart asleep:awake begin:end below:above cruel:kind empty:full enter:exit
forget:remember friend:enemy guilty:innocent healthy:sick import:export increase:decrease lazy:hardworking
maximum:minimum morning:evening north:south east:west accept:refuse add:subtract always:never
attack:defend borrow:lend bright:dim broad:narrow calm:anxious certain:uncertain comedy:tragedy
cool:warm danger:safety dawn:dusk defeat:victory dry:wet dull:interesting export:import fail:succeed
fake:genuine fat:thin fear:courage fiction:fact float:sink freeze:melt generous:selfish gentle:rough
giant:dwarf hero:villain hide:seek horizontal:vertical humble:proud include:exclude joy:sorrow
junior:senior knowledge:ignorance major:minor mature:immature messy:tidy minority:majority
natural:artificial optimist:pessimist partial:complete past:future permanent:temporary plural:singular
positive:negative private:public quick:slow rare:common reward:punishment rise:fall rural:urban""")
IRREGULAR = words("""be:was begin:began bite:bit blow:blew break:broke bring:brought build:built buy:bought
catch:caught choose:chose come:came cost:cost cut:cut dig:dug do:did draw:drew drink:drank drive:drove
eat:ate fall:fell feed:fed feel:felt fight:fought find:found fly:flew forget:forgot forgive:forgave
freeze:froze get:got give:gave go:went grow:grew hang:hung have:had hear:heard hide:hid hit:hit hold:held
hurt:hurt keep:kept know:knew lay:laid lead:led leave:left lend:lent let:let lie:lay lose:lost make:made
mean:meant meet:met pay:paid put:put quit:quit read:read ride:rode ring:rang rise:rose run:ran say:said
see:saw seek:sought sell:sold send:sent set:set shake:shook shine:shone shoot:shot shut:shut sing:sang
sink:sank sit:sat sleep:slept slide:slid speak:spoke spend:spent stand:stood steal:stole stick:stuck
sting:stung strike:struck swear:swore sweep:swept swim:swam swing:swung take:took teach:taught tear:tore
tell:told think:thought throw:threw understand:understood wake:woke wear:wore win:won write:wrote""")
REGULAR = words("""walk talk jump play cook clean open close watch wash paint visit answer ask call help work
listen laugh smile dance start finish travel climb kick fix look need want move live love hope use
close change agree arrive bake decide hate like share smoke carry study try cry marry hurry worry copy
stop plan drop shop rob beg hug grab admit prefer""")
WORDS = words("""apple river mountain keyboard elephant sunshine notebook window garden pencil chocolate bicycle
umbrella computer butterfly dragon castle ocean village thunder whisper lantern harbor meadow crystal
blanket journey kitten orchestra pyramid volcano rainbow compass ladder marble puzzle saddle tornado
violin walrus yogurt zebra anchor biscuit candle dolphin feather giraffe helmet igloo jacket kangaroo
lemon magnet napkin oyster parrot quilt rocket scissors tractor unicorn vacuum wagon xylophone yacht
zipper acorn balloon cactus daisy engine falcon goblin hammock island jungle kettle lobster mirror
nectar onion pepper quartz ribbon spider tulip velvet waffle basket camera desert eagle forest glacier
honey insect jigsaw koala lizard monkey nickel orange peanut rabbit salmon teapot walnut""")
PHRASINGS = {
    "antonym": (
        "What is the opposite of {w}?", "Give me an antonym for the word '{w}'.", "opposite of {w}",
        "What word means the opposite of \"{w}\"?", "antonym of {w}?", "Name a word that is the opposite of {w}.",
        "hey, what's the opposite of {w}", "Tell me the antonym of {w}, one word please.",
        "If something is not {w}, it is the opposite, which is what?",
    ),
    "past_tense": (
        "What is the past tense of {w}?", "past tense of {w}", "Give the simple past form of the verb '{w}'.",
        "How do you say '{w}' in the past tense?", "Yesterday I ___ (to {w}). Fill in the verb.",
        "what's the past of {w}?", "Conjugate '{w}' in the simple past.", "Put the verb {w} into the past tense.",
        "I {w} every day. Yesterday I... ? (just the verb)",
    ),
    "addition": (
        "What is {a} plus {b}?", "{a} + {b} = ?", "Add {a} and {b}.", "what's {a}+{b}",
        "Compute the sum of {a} and {b}.",
        "If I have {a} apples and get {b} more, how many apples do I have?", "Calculate {a} + {b}.",
        "sum of {a} and {b}?", "Quick maths: {a} plus {b}", "Please add {b} to {a}.",
    ),
    "letter_count": (
        "How many letters are in the word '{w}'?", "count the letters in {w}", "How many letters does {w} have?",
        "Number of letters in \"{w}\"?", "how long is the word {w}, in letters?",
        "Count how many characters '{w}' has.",
        "Tell me the letter count of {w}.", "{w}: how many letters?",
    ),
    "unit_convert": (
        "Convert {n} {u} to {v}.", "How many {v} are in {n} {u}?", "{n} {u} in {v}?", "what is {n} {u} in {v}",
        "Express {n} {u} in {v}.", "I have {n} {u}. How much is that in {v}?", "{n} {u} = ? {v}",
        "Please convert {n} {u} into {v}.", "How much is {n} {u} when measured in {v}?",
    ),
}  # fmt: skip
UNITS = (
    ("kilometers", "meters", 1000), ("kilograms", "grams", 1000), ("hours", "minutes", 60),
    ("meters", "centimeters", 100),
)  # fmt: skip
TASKS = tuple(PHRASINGS)


def past(verb: str) -> str:
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ied"
    if verb in {"stop", "plan", "drop", "shop", "rob", "beg", "hug", "grab", "admit", "prefer"}:
        return verb + verb[-1] + "ed"
    return verb + "ed"


def items(task: str, rng: random.Random) -> list[tuple[str, dict, str]]:
    """Every (key, fields, answer) of a task; the key decides the train/eval split."""
    if task == "antonym":
        pairs = [p.split(":") for p in ANTONYMS]
        return [(a, {"w": a}, b) for a, b in dict(pairs).items()]
    if task == "past_tense":
        verbs = dict(p.split(":") for p in IRREGULAR) | {v: past(v) for v in REGULAR}
        return [(v, {"w": v}, p) for v, p in verbs.items()]
    if task == "addition":
        pairs = {(rng.randint(2, 999), rng.randint(2, 999)) for _ in range(600)}
        return [(f"{a}+{b}", {"a": a, "b": b}, str(a + b)) for a, b in sorted(pairs)]
    if task == "letter_count":
        return [(w, {"w": w}, str(len(w))) for w in dict.fromkeys(WORDS)]
    out = []
    for u, v, factor in UNITS:
        for n in range(1, 60):
            out.append((f"{n}{u}", {"n": n, "u": u, "v": v}, f"{n * factor} {v}"))
    return out


def build(task: str, seed: int, n_train: int, n_eval: int) -> tuple[list[dict], list[dict]]:
    """Train and eval records of one task: eval items first, no item in both; train items repeat under
    other phrasings when the item pool is smaller than n_train (each prompt still occurs once)."""
    rng = random.Random(f"phrasing/{task}/{seed}")
    pool = items(task, rng)
    rng.shuffle(pool)
    evals, rest = pool[:n_eval], pool[n_eval:]
    record = lambda item, phrasing: {"prompt": phrasing.format(**item[1]), "response": item[2]}  # noqa: E731
    eval_rows = [record(item, rng.choice(PHRASINGS[task])) for item in evals]
    train_rows: dict[str, dict] = {}
    for _ in range(50):
        for item in rest:
            row = record(item, rng.choice(PHRASINGS[task]))
            train_rows.setdefault(row["prompt"], row)
            if len(train_rows) == n_train:
                return list(train_rows.values()), eval_rows
    raise ValueError(f"{task}: cannot make {n_train} distinct train prompts")


def write_suite(folder: Path, seed: int = 0, n_train: int = 120, n_eval: int = 30) -> Path:
    """Write <task>_{train,eval}.jsonl and tasks.yaml (the task list; options come from the caller)."""
    from forgetless.utils.fileio import write_jsonl_atomic, write_text_atomic

    folder.mkdir(parents=True, exist_ok=True)
    lines = ["# forgetless continual run --config tasks.yaml --output runs/phrasing", "tasks:"]
    for task in TASKS:
        train, evals = build(task, seed, n_train, n_eval)
        write_jsonl_atomic(folder / f"{task}_train.jsonl", train)
        write_jsonl_atomic(folder / f"{task}_eval.jsonl", evals)
        files = f"train: {task}_train.jsonl, eval: {task}_eval.jsonl"
        lines.append(f"  - {{name: {task}, {files}, metric: exact_match}}")
    return write_text_atomic(folder / "tasks.yaml", "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_suite(args.output, args.seed))


if __name__ == "__main__":
    main()
