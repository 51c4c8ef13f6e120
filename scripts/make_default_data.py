"""Generate the project's own instruction data set: data/sdtp_default/train.jsonl (databricks-dolly-15k schema).

    python scripts/make_default_data.py                  # seed 0, 600 samples -> data/sdtp_default/train.jsonl
    python scripts/make_default_data.py --stats          # also print SmolLM2 token-length stats (for the README)

Every sample is built from invented facts (fictional towns, ships, people, products, experiments, train
services), so the answers are right by construction and nothing is copied from an existing data set. A
context passage holds several records of one kind; the question needs only ONE record (often one sentence)
of it: the rest is realistic distraction for token pruning. Each line is
{"instruction", "context", "response", "category", "layout"}; `layout` ("instruction_first" or
"context_first") tells the prompt builder (sdtp_lib.training.data.build_samples) where the instruction goes.
Only the standard library is used for generation, with one seeded random.Random: same seed, same file.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger("make_default_data")
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "sdtp_default" / "train.jsonl"

# ----------------------------------------------------------------- word pools (all invented or generic)
COLOURS = ["red", "blue", "green", "yellow", "white", "black", "grey", "orange", "purple", "brown", "teal",
           "navy blue", "crimson", "silver", "maroon", "olive green", "pink", "cream", "violet", "amber"]
FIRST = ["Mira", "Tobias", "Elna", "Joren", "Hester", "Caspian", "Ilse", "Bram", "Odile", "Fenwick", "Rosalind",
         "Anselm", "Tamsin", "Corwin", "Liesl", "Dorian", "Maren", "Ewan", "Petra", "Soren", "Agnes", "Leopold",
         "Yara", "Quentin", "Nell", "Horatio", "Wilma", "Ambrose", "Greta", "Lucan", "Ottilie", "Rufus", "Sabine",
         "Emrys", "Delphine", "Cyrus", "Hanne", "Florian", "Beatrix", "Milo"]
LAST = ["Castell", "Brightwater", "Okonye", "Varga", "Thornbury", "Lindqvist", "Marchetti", "Ashdown", "Pellow",
        "Kestrel", "Ravensworth", "Dunmore", "Halloran", "Strand", "Ferreira", "Whitlock", "Novak", "Greaves",
        "Aldous", "Penhale", "Moravec", "Quayle", "Sandoval", "Tregarth", "Bexley", "Carrick", "Inglis", "Jessop",
        "Vantongeren", "Ollerton", "Wyndham", "Rosier", "Abernathy", "Fairley", "Gorse", "Hollis"]
TOWN_A = ["Hallow", "Ash", "Bram", "Cold", "Elder", "Fern", "Gilder", "Hart", "Ivy", "Kestrel", "Lark", "Marrow",
          "Nettle", "Oak", "Pell", "Quill", "Rook", "Sedge", "Thorn", "Wex", "Yarrow", "Bell", "Crane", "Dun",
          "Stoke", "Wren", "Brack", "Holm"]
TOWN_B = [" Ford", "bury", "wick", " Cross", "mere", "stead", "ton", " Hollow", "field", "by", " Vale", "mouth",
          "combe", " Green", "ley"]
RIVERS = ["Avel", "Brenn", "Corra", "Dussel", "Esk", "Fallow", "Grenn", "Hask", "Ilse", "Jory", "Kell", "Lune",
          "Morrow", "Nyde", "Orrin", "Pask", "Quell", "Rask", "Sallow", "Tavy", "Ure", "Wendle"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
SHIP_A = ["Morning", "Silver", "Northern", "Quiet", "Restless", "Golden", "Amber", "Patient", "Swift", "Winter",
          "Lucky", "Brave", "Distant", "Crimson", "Steady", "Wandering", "Evening", "Iron"]
SHIP_B = ["Heron", "Gull", "Star", "Tide", "Lantern", "Fox", "Wren", "Harvest", "Anchor", "Comet", "Otter",
          "Petrel", "Meadow", "Kite", "Promise", "Current", "Bell", "Pilgrim"]
CARGO = ["timber", "grain", "coal", "wool", "salt", "tea", "copper ore", "salted fish", "cement", "paper",
         "olive oil", "bricks", "cotton", "potatoes", "marble"]
JOBS = ["clockmaker", "beekeeper", "cartographer", "violin teacher", "glassblower", "ferry pilot", "botanist",
        "bookbinder", "surveyor", "baker", "veterinarian", "stonemason", "librarian", "radio engineer", "weaver",
        "pharmacist", "architect", "translator"]
INSTRUMENTS = ["cello", "accordion", "flute", "harp", "trumpet", "banjo", "clarinet", "oboe", "piano",
               "double bass", "mandolin", "bagpipes", "viola", "trombone"]
PET_NAMES = ["Biscuit", "Pepper", "Juniper", "Captain", "Noodle", "Clover", "Basil", "Tansy", "Pickle", "Ember",
             "Moss", "Sprocket", "Nutmeg", "Marble", "Truffle", "Whisker"]
STREETS = ["Willow Lane", "Harbour Road", "Mill Street", "Orchard Row", "Chapel Street", "Foundry Lane",
           "Kingfisher Way", "Bridge Street", "Tannery Close", "Station Road", "Rope Walk", "Lantern Hill",
           "Quarry Lane", "Market Square"]
BRANDS = ["Vela", "Korrin", "Austral", "Lumo", "Tessel", "Brisk", "Norda", "Pell & Hart", "Zephyr", "Grange",
          "Orbis", "Calder"]
PRODUCTS = ["kettle", "desk lamp", "desk fan", "toaster", "backpack", "radio", "bicycle light", "blender",
            "umbrella", "camera", "alarm clock", "coffee grinder", "hair dryer", "rice cooker", "speaker"]
MATERIALS = ["copper wire", "quartz sand", "a yeast culture", "rye flour", "iron filings", "beeswax",
             "seawater", "clay slip", "linen thread", "pine resin", "chalk powder", "tin foil", "barley seeds"]
LETTERS = "ABCDEFGHKLMNPRSTV"


def town_name(rng):
    return rng.choice(TOWN_A) + rng.choice(TOWN_B)


def person(rng):
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])(?!one|use|uni|eu)")


def articles(s: str) -> str:
    """'a orange finish' -> 'an orange finish' (values are filled into templates written with 'a')."""
    return _A_BEFORE_VOWEL.sub(r"\1n ", s)


def plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def date(rng):
    return f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {rng.randint(1995, 2023)}"


def clock(rng):
    return f"{rng.randint(5, 21):02d}:{rng.choice(range(0, 60, 5)):02d}"


# ----------------------------------------------------------------- record kinds
@dataclass
class Attr:
    """One fact of a record: how to state it, ask about it, answer, summarise, and (optionally) look it up."""
    key: str
    label: str                        # for extraction answers: "captain", "home port", ...
    value: Callable                   # rng -> value (string)
    says: list[str]                   # sentences stating the fact; {N} name, {R} reference ("the X"), {v} value
    asks: list[str]                   # questions whose answer is the value
    answer: list[str]                 # one-sentence answers
    frag: str                         # summary fragment ("was launched in {v}")
    which: str | None = None          # reverse question ("Which ship has a {v} hull?"): needs a unique value
    which_answer: str | None = None


@dataclass
class Kind:
    name: str
    titles: list[str]                 # document headers
    make_name: Callable               # rng -> entity name
    ref: str                          # how questions refer to it: "{N}" or "the {N}"
    intro: list[str]                  # first sentence of a record
    filler: list[str]                 # sentences with no askable fact
    attrs: list[Attr]
    entity: str                       # "ship", "town", ... for generic instructions
    chars_per_token: float            # measured on generated passages with the SmolLM2 tokenizer


TOWNS = Kind(
    "town", ["Gazetteer of the {region} district", "Notes on towns of the {region} valley",
             "A traveller's guide to the {region} hills", "Parish survey: the {region} region"],
    town_name, "{N}",
    ["{N} is a small town in the {region} district.", "The town of {N} sits at the foot of a low hill.",
     "{N} is a market town with a single long high street.", "Travellers reach {N} by a narrow country road."],
    ["Its streets are narrow and lined with old stone houses.", "Most of the houses have slate roofs.",
     "The surrounding fields are used for sheep and barley.", "Visitors often stop there on the way to the coast.",
     "In winter the roads around it are sometimes closed by snow.", "A small bakery on the square opens at dawn.",
     "Walkers like the footpaths that climb the nearby ridge."],
    [Attr("founded", "founding year", lambda r: str(r.randint(1100, 1790)),
          ["{N} was founded in {v}.", "Records show that the first houses in {N} were built in {v}.",
           "The town charter of {N} dates from {v}."],
          ["In what year was {N} founded?", "When was {N} founded?", "What year does the founding of {N} date from?"],
          ["{N} was founded in {v}.", "It was founded in {v}."], "was founded in {v}"),
     Attr("bridge", "bridge year", lambda r: str(r.randint(1700, 1955)),
          ["The stone bridge at {N} was built in {v}.", "A bridge was built across the river at {N} in {v}.",
           "In {v} the people of {N} built the bridge that still carries the main road."],
          ["What year was the bridge at {N} built?", "When was the bridge at {N} built?",
           "In which year was the bridge at {N} constructed?"],
          ["The bridge at {N} was built in {v}.", "It was built in {v}."], "has a bridge built in {v}"),
     Attr("population", "population", lambda r: str(r.randint(20, 1900) * 10),
          ["About {v} people live in {N}.", "{N} has a population of roughly {v}.",
           "The last count found {v} residents in {N}."],
          ["How many people live in {N}?", "What is the population of {N}?"],
          ["About {v} people live in {N}.", "{N} has roughly {v} inhabitants."], "has about {v} inhabitants",
          "Which town has a population of about {v}?", "{N} has about {v} inhabitants."),
     Attr("river", "river", lambda r: r.choice(RIVERS),
          ["{N} lies on the River {v}.", "The River {v} runs through the middle of {N}."],
          ["Which river runs through {N}?", "On which river does {N} lie?"],
          ["{N} lies on the River {v}.", "The River {v}."], "lies on the River {v}",
          "Which town lies on the River {v}?", "{N} lies on the River {v}."),
     Attr("market", "market day", lambda r: r.choice(DAYS),
          ["A market is held in {N} every {v}.", "Every {v}, farmers sell their produce at the market in {N}."],
          ["On which day is the market held in {N}?", "What day of the week is market day in {N}?"],
          ["The market in {N} is held every {v}.", "Market day in {N} is {v}."], "holds its market on {v}s"),
     Attr("door", "town hall door colour", lambda r: r.choice(COLOURS),
          ["The door of the town hall in {N} is painted {v}.", "In {N}, the town hall has a {v} front door."],
          ["What colour is the town hall door in {N}?", "What colour is the door of the town hall in {N}?"],
          ["The town hall door in {N} is {v}.", "It is {v}."], "has a {v} town hall door",
          "In which town is the town hall door {v}?", "The town hall door is {v} in {N}."),
     Attr("mayor", "mayor", person,
          ["The current mayor of {N} is {v}.", "{v} has served as mayor of {N} since the last election."],
          ["Who is the mayor of {N}?", "Who serves as mayor of {N}?"],
          ["The mayor of {N} is {v}.", "{v} is the mayor of {N}."], "is led by mayor {v}",
          "Which town has {v} as its mayor?", "{v} is the mayor of {N}."),
     Attr("festival", "festival month", lambda r: r.choice(MONTHS),
          ["Each {v}, {N} holds a lantern festival.", "The lantern festival of {N} takes place every {v}."],
          ["In which month does {N} hold its lantern festival?", "When is the lantern festival in {N}?"],
          ["{N} holds its lantern festival in {v}.", "It takes place every {v}."], "holds a lantern festival in {v}")],
    "town", 3.9)

SHIPS = Kind(
    "ship", ["Harbour register of {region}", "Ships listed at the port of {region}", "Fleet notes, {region} harbour",
             "Shipping log of the {region} company"],
    lambda r: f"{r.choice(SHIP_A)} {r.choice(SHIP_B)}", "the {N}",
    ["The {N} is a cargo ship.", "The {N} is a two-masted schooner.", "The {N} is a coastal steamer.",
     "The {N} is a motor vessel that works the northern routes."],
    ["She is known for keeping to her timetable.", "Her deck was replaced during a long refit.",
     "Sailors say she handles well in heavy seas.", "She often winters in a sheltered dock.",
     "Her bell hangs beside the wheelhouse.", "Her logbooks are kept in the harbour office."],
    [Attr("launched", "launch year", lambda r: str(r.randint(1850, 1995)),
          ["The {N} was launched in {v}.", "She was first launched in {v}."],
          ["In what year was the {N} launched?", "When was the {N} launched?"],
          ["The {N} was launched in {v}.", "She was launched in {v}."], "was launched in {v}"),
     Attr("yard", "shipyard", lambda r: town_name(r),
          ["The {N} was built at the shipyard in {v}.", "She was built by the yard at {v}."],
          ["Where was the {N} built?", "At which shipyard was the {N} built?"],
          ["The {N} was built at {v}.", "She was built in {v}."], "was built at {v}"),
     Attr("captain", "captain", person,
          ["The {N} is commanded by Captain {v}.", "Her captain is {v}."],
          ["Who is the captain of the {N}?", "Who commands the {N}?"],
          ["The captain of the {N} is {v}.", "Captain {v} commands the {N}."], "is commanded by Captain {v}",
          "Which ship is commanded by Captain {v}?", "Captain {v} commands the {N}."),
     Attr("hull", "hull colour", lambda r: r.choice(COLOURS),
          ["The hull of the {N} is painted {v}.", "The {N} has a {v} hull."],
          ["What colour is the hull of the {N}?", "What colour is the {N}'s hull?"],
          ["The hull of the {N} is {v}.", "It is {v}."], "has a {v} hull",
          "Which ship has a {v} hull?", "The {N} has a {v} hull."),
     Attr("length", "length", lambda r: f"{r.randint(18, 180)} metres",
          ["The {N} is {v} long.", "From bow to stern the {N} measures {v}."],
          ["How long is the {N}?", "What is the length of the {N}?"],
          ["The {N} is {v} long.", "She measures {v}."], "is {v} long"),
     Attr("crew", "crew size", lambda r: str(r.randint(4, 60)),
          ["The {N} carries a crew of {v}.", "A crew of {v} sails on the {N}."],
          ["How many crew members does the {N} carry?", "What is the size of the {N}'s crew?"],
          ["The {N} carries a crew of {v}.", "Her crew numbers {v}."], "sails with a crew of {v}"),
     Attr("port", "home port", lambda r: town_name(r),
          ["The home port of the {N} is {v}.", "The {N} is registered in {v}."],
          ["What is the home port of the {N}?", "Where is the {N} registered?"],
          ["The {N} is registered in {v}.", "Her home port is {v}."], "is registered in {v}",
          "Which ship is registered in {v}?", "The {N} is registered in {v}."),
     Attr("cargo", "main cargo", lambda r: r.choice(CARGO),
          ["The {N} mostly carries {v}.", "Her main cargo is {v}."],
          ["What does the {N} mostly carry?", "What is the main cargo of the {N}?"],
          ["The {N} mostly carries {v}.", "Her main cargo is {v}."], "mostly carries {v}",
          "Which ship mostly carries {v}?", "The {N} mostly carries {v}.")],
    "ship", 3.75)

PEOPLE = Kind(
    "person", ["Staff directory of the {region} guild", "Members of the {region} music society",
               "Residents' notes, {region} village", "Who's who in {region}"],
    person, "{N}",
    ["{N} is a long-standing member of the society.", "{N} joined the guild many years ago.",
     "{N} is well known in the village.", "Everyone at the community hall knows {N}."],
    ["Friends describe this member as patient and precise.", "Most weekends are spent walking in the hills.",
     "A small workshop at the back of the house is full of tools.", "Letters to this member arrive almost daily.",
     "Neighbours say the garden is the tidiest on the street.", "Tea is always offered to visitors."],
    [Attr("born", "birth year", lambda r: str(r.randint(1935, 2002)),
          ["{N} was born in {v}.", "Born in {v}, {N} grew up by the sea."],
          ["In what year was {N} born?", "When was {N} born?"],
          ["{N} was born in {v}.", "In {v}."], "was born in {v}"),
     Attr("birthplace", "birthplace", lambda r: town_name(r),
          ["{N} was born in the town of {v}.", "{N} comes from {v}."],
          ["Where does {N} come from?", "In which town was {N} born?"],
          ["{N} comes from {v}.", "{N} was born in {v}."], "comes from {v}",
          "Who comes from {v}?", "{N} comes from {v}."),
     Attr("job", "occupation", lambda r: r.choice(JOBS),
          ["{N} works as a {v}.", "By trade, {N} is a {v}."],
          ["What does {N} do for a living?", "What is {N}'s occupation?"],
          ["{N} works as a {v}.", "{N} is a {v}."], "works as a {v}",
          "Who works as a {v}?", "{N} works as a {v}."),
     Attr("instrument", "instrument", lambda r: r.choice(INSTRUMENTS),
          ["{N} plays the {v}.", "In the evenings {N} practises the {v}."],
          ["Which instrument does {N} play?", "What instrument does {N} practise?"],
          ["{N} plays the {v}.", "The {v}."], "plays the {v}",
          "Who plays the {v}?", "{N} plays the {v}."),
     Attr("colour", "favourite colour", lambda r: r.choice(COLOURS),
          ["The favourite colour of {N} is {v}.", "{N} says that {v} is their favourite colour."],
          ["What is {N}'s favourite colour?", "Which colour does {N} like best?"],
          ["{N}'s favourite colour is {v}.", "It is {v}."], "likes {v} best"),
     Attr("pet", "dog's name", lambda r: r.choice(PET_NAMES),
          ["{N} has a dog named {v}.", "A dog called {v} follows {N} everywhere."],
          ["What is the name of {N}'s dog?", "What is {N}'s dog called?"],
          ["{N}'s dog is named {v}.", "The dog is called {v}."], "owns a dog called {v}",
          "Whose dog is called {v}?", "The dog called {v} belongs to {N}."),
     Attr("street", "street", lambda r: r.choice(STREETS),
          ["{N} lives on {v}.", "The house of {N} is on {v}."],
          ["On which street does {N} live?", "Where does {N} live?"],
          ["{N} lives on {v}.", "On {v}."], "lives on {v}",
          "Who lives on {v}?", "{N} lives on {v}.")],
    "person", 3.65)

PRODUCTS_K = Kind(
    "product", ["Product catalogue, {region} edition", "Spring catalogue of {region} Home Goods",
                "Stock list of the {region} warehouse", "New products from {region} Trading"],
    lambda r: f"{r.choice(BRANDS)} {r.choice(LETTERS)}{r.randint(10, 990)} {r.choice(PRODUCTS)}", "the {N}",
    ["The {N} is one of the best-selling items in the range.", "The {N} is a new addition to the catalogue.",
     "The {N} is aimed at small households.", "The {N} replaces an older model."],
    ["It comes in a recyclable cardboard box.", "Reviewers praise its simple controls.",
     "A printed manual is included in several languages.", "Spare parts can be ordered from the shop.",
     "It is popular as a gift.", "The design has barely changed in years."],
    [Attr("price", "price", lambda r: f"{r.randint(9, 480)} euros",
          ["The {N} costs {v}.", "The {N} is sold for {v}."],
          ["How much does the {N} cost?", "What is the price of the {N}?"],
          ["The {N} costs {v}.", "It costs {v}."], "costs {v}",
          "Which product costs {v}?", "The {N} costs {v}."),
     Attr("colour", "colour", lambda r: r.choice(COLOURS),
          ["The {N} is only available in {v}.", "The {N} comes in a {v} finish."],
          ["What colour is the {N}?", "In which colour does the {N} come?"],
          ["The {N} is {v}.", "It comes in {v}."], "comes in {v}"),
     Attr("weight", "weight", lambda r: f"{r.randint(12, 480) * 10} grams",
          ["The {N} weighs {v}.", "Without packaging, the {N} weighs {v}."],
          ["How much does the {N} weigh?", "What is the weight of the {N}?"],
          ["The {N} weighs {v}.", "It weighs {v}."], "weighs {v}"),
     Attr("release", "release year", lambda r: str(r.randint(2003, 2024)),
          ["The {N} was released in {v}.", "The {N} first went on sale in {v}."],
          ["When was the {N} released?", "In which year did the {N} go on sale?"],
          ["The {N} was released in {v}.", "It went on sale in {v}."], "was released in {v}"),
     Attr("warranty", "warranty", lambda r: plural(r.randint(1, 6), "year"),
          ["The {N} comes with a warranty of {v}.", "The {N} is covered by a warranty of {v}."],
          ["How long is the warranty on the {N}?", "What warranty does the {N} have?"],
          ["The {N} has a warranty of {v}.", "Its warranty lasts {v}."], "has a warranty of {v}"),
     Attr("designer", "designer", person,
          ["The {N} was designed by {v}.", "{v} designed the {N}."],
          ["Who designed the {N}?", "Who is the designer of the {N}?"],
          ["The {N} was designed by {v}.", "{v} designed it."], "was designed by {v}",
          "Which product was designed by {v}?", "{v} designed the {N}."),
     Attr("factory", "factory town", lambda r: town_name(r),
          ["The {N} is made in a factory in {v}.", "The {N} is assembled in {v}."],
          ["Where is the {N} made?", "In which town is the {N} assembled?"],
          ["The {N} is made in {v}.", "It is assembled in {v}."], "is made in {v}")],
    "product", 3.25)

EXPERIMENTS = Kind(
    "experiment", ["Laboratory notebook, {region} institute", "Trial log of the {region} research station",
                   "Experiment summaries, {region} lab", "Results sheet from the {region} workshop"],
    lambda r: f"{r.choice(['Trial', 'Run', 'Batch', 'Test'])} {r.choice(LETTERS)}-{r.randint(2, 99)}", "{N}",
    ["{N} was part of the spring test series.", "{N} repeated an earlier procedure with a new sample.",
     "{N} was set up to study slow reactions.", "{N} was the first test with the new equipment."],
    ["The equipment was cleaned before the start.", "The notes were checked by a second person.",
     "The room was kept dark during the measurement.", "Two thermometers were used as a cross-check.",
     "Nothing unusual was recorded during setup.", "The sample was weighed twice."],
    [Attr("date", "date", date,
          ["{N} was carried out on {v}.", "{N} took place on {v}."],
          ["On what date was {N} carried out?", "When did {N} take place?"],
          ["{N} was carried out on {v}.", "On {v}."], "was carried out on {v}"),
     Attr("temp", "temperature", lambda r: f"{r.randint(-20, 240)} degrees Celsius",
          ["{N} was run at {v}.", "During {N} the temperature was held at {v}."],
          ["At what temperature was {N} run?", "What temperature was used in {N}?"],
          ["{N} was run at {v}.", "At {v}."], "was run at {v}",
          "Which test was run at {v}?", "{N} was run at {v}."),
     Attr("hours", "duration", lambda r: f"{r.randint(2, 96)} hours",
          ["{N} lasted {v}.", "The whole of {N} took {v}."],
          ["How long did {N} last?", "What was the duration of {N}?"],
          ["{N} lasted {v}.", "It took {v}."], "lasted {v}"),
     Attr("researcher", "researcher", person,
          ["{N} was led by {v}.", "{v} was in charge of {N}."],
          ["Who led {N}?", "Who was in charge of {N}?"],
          ["{N} was led by {v}.", "{v} led it."], "was led by {v}",
          "Which test was led by {v}?", "{v} led {N}."),
     Attr("material", "sample", lambda r: r.choice(MATERIALS),
          ["{N} used {v} as its sample.", "The sample in {N} was {v}."],
          ["What sample was used in {N}?", "Which material was tested in {N}?"],
          ["{N} used {v}.", "The sample was {v}."], "tested {v}",
          "Which test used {v} as its sample?", "{N} used {v}."),
     Attr("result", "result colour", lambda r: r.choice(COLOURS),
          ["At the end of {N}, the sample had turned {v}.", "{N} ended with the sample turning {v}."],
          ["What colour did the sample turn in {N}?", "What colour was the sample at the end of {N}?"],
          ["The sample in {N} turned {v}.", "It turned {v}."], "turned the sample {v}"),
     Attr("yield", "yield", lambda r: f"{r.randint(3, 99)} percent",
          ["{N} gave a yield of {v}.", "The yield of {N} was {v}."],
          ["What yield did {N} give?", "What was the yield of {N}?"],
          ["{N} gave a yield of {v}.", "The yield was {v}."], "gave a yield of {v}"),
     Attr("room", "room", lambda r: f"Room {r.randint(1, 4)}{r.randint(0, 3)}{r.randint(1, 9)}",
          ["{N} was done in {v}.", "The equipment for {N} was set up in {v}."],
          ["In which room was {N} done?", "Where was {N} set up?"],
          ["{N} was done in {v}.", "In {v}."], "was done in {v}")],
    "experiment", 3.2)

SERVICES = Kind(
    "train service", ["Timetable of the {region} railway", "Weekday services from {region} station",
                      "Notes from the {region} line", "Departure board, {region} junction"],
    lambda r: f"Service {r.randint(100, 999)}", "{N}",
    ["{N} is a regional train.", "{N} runs every weekday.", "{N} is an express service.",
     "{N} is a stopping train that serves the small villages."],
    ["It is usually busy with commuters.", "Bicycles can be taken on board.", "A trolley sells tea and sandwiches.",
     "Tickets can be bought on the train.", "The seats were replaced last year.", "It rarely runs late."],
    [Attr("departs", "departure time", clock,
          ["{N} departs at {v}.", "{N} leaves the station at {v}."],
          ["What time does {N} depart?", "When does {N} leave the station?"],
          ["{N} departs at {v}.", "At {v}."], "departs at {v}",
          "Which service departs at {v}?", "{N} departs at {v}."),
     Attr("dest", "destination", lambda r: town_name(r),
          ["{N} runs to {v}.", "The destination of {N} is {v}."],
          ["Where does {N} go?", "What is the destination of {N}?"],
          ["{N} runs to {v}.", "It goes to {v}."], "runs to {v}",
          "Which service runs to {v}?", "{N} runs to {v}."),
     Attr("platform", "platform", lambda r: str(r.randint(1, 14)),
          ["{N} leaves from platform {v}.", "Passengers board {N} at platform {v}."],
          ["From which platform does {N} leave?", "Which platform does {N} use?"],
          ["{N} leaves from platform {v}.", "Platform {v}."], "uses platform {v}"),
     Attr("cars", "number of carriages", lambda r: str(r.randint(2, 12)),
          ["{N} has {v} carriages.", "{N} is formed of {v} carriages."],
          ["How many carriages does {N} have?", "How many carriages make up {N}?"],
          ["{N} has {v} carriages.", "It has {v} carriages."], "has {v} carriages"),
     Attr("driver", "driver", person,
          ["{N} is usually driven by {v}.", "The regular driver of {N} is {v}."],
          ["Who usually drives {N}?", "Who is the regular driver of {N}?"],
          ["{N} is usually driven by {v}.", "{v} drives it."], "is driven by {v}",
          "Which service is driven by {v}?", "{v} drives {N}."),
     Attr("minutes", "journey time", lambda r: f"{r.randint(12, 240)} minutes",
          ["The journey on {N} takes {v}.", "{N} reaches its destination after {v}."],
          ["How long is the journey on {N}?", "How long does {N} take?"],
          ["The journey on {N} takes {v}.", "It takes {v}."], "takes {v}"),
     Attr("engine", "locomotive colour", lambda r: r.choice(COLOURS),
          ["{N} is pulled by a {v} locomotive.", "The locomotive on {N} is painted {v}."],
          ["What colour is the locomotive of {N}?", "What colour is the engine that pulls {N}?"],
          ["The locomotive of {N} is {v}.", "It is {v}."], "is pulled by a {v} locomotive")],
    "train service", 3.25)

KINDS = [TOWNS, SHIPS, PEOPLE, PRODUCTS_K, EXPERIMENTS, SERVICES]
REGIONS = ["Elderwood", "Saltmarsh", "Greyhaven", "Northmoor", "Brackenridge", "Lowdale", "Stormcliff",
           "Amberlea", "Copperfield", "Westerly"]


# ----------------------------------------------------------------- context passages
@dataclass
class Record:
    name: str
    facts: dict                       # attr key -> value (only the stated ones)
    text: str


def fill(t: str, kind: Kind, name: str, v: str = "", region: str = "") -> str:
    ref = kind.ref.format(N=name)
    return cap(t.format(N=name, R=ref, v=v, region=region))


def make_record(rng, kind: Kind, name: str, region: str) -> Record:
    attrs = rng.sample(kind.attrs, rng.randint(3, 4))
    facts, sents = {}, []
    for a in attrs:
        v = a.value(rng)
        facts[a.key] = v
        sents.append(fill(rng.choice(a.says), kind, name, v))
    rng.shuffle(sents)
    for f in rng.sample(kind.filler, rng.choice([0, 0, 1])):       # sentences with no askable fact
        sents.insert(rng.randint(1, len(sents)), f)
    text = " ".join([fill(rng.choice(kind.intro), kind, name, region=region)] + sents)
    return Record(name, facts, text)


def make_context(rng, kind: Kind, tokens: tuple[int, int] = (200, 380), max_records: int = 10
                 ) -> tuple[str, list[Record]]:
    """3-`max_records` records of one kind, about `tokens` SmolLM2 tokens (estimated from characters, no tokenizer
    needed). The defaults (3-7 records in practice, 200-430 tokens) keep prompt + response within 512 tokens."""
    region = rng.choice(REGIONS)
    lo, hi = tokens
    target, cap_chars = rng.randint(lo, hi) * kind.chars_per_token, (hi + 10) * kind.chars_per_token
    names, records, chars, tries = [], [], 0, 0
    while (chars < target or len(records) < 3) and len(records) < max_records:
        name = kind.make_name(rng)
        if any(name in n or n in name for n in names):     # "Trial B-2" vs "Trial B-25": ambiguous
            tries += 1
            if tries > 100 * max_records:  # the name pool is exhausted for this kind: a shorter passage
                break
            continue
        rec = make_record(rng, kind, name, region)
        if len(records) >= 3 and chars + len(rec.text) > cap_chars:
            break
        names.append(name)
        records.append(rec)
        chars += len(rec.text) + 2
    style = rng.choice(["plain", "numbered", "titled", "titled_numbered"])
    paras = [f"{i + 1}. {r.text}" if "numbered" in style else r.text for i, r in enumerate(records)]
    if "titled" in style:
        paras.insert(0, rng.choice(kind.titles).format(region=region))
    return "\n\n".join(paras), records


def attr(kind: Kind, key: str) -> Attr:
    return next(a for a in kind.attrs if a.key == key)


def unique_value(records: list[Record], key: str, value: str) -> bool:
    return sum(r.facts.get(key) == value for r in records) == 1


# ----------------------------------------------------------------- tasks with context
def lead(rng, layout: str) -> str:
    """Optional layout-aware lead-in, so instructions are not all bare questions."""
    if layout == "instruction_first":
        return rng.choice(["", "", "", "Read the passage below and answer: ", "According to the text, ",
                           "Using the context, answer this question: "])
    return rng.choice(["", "", "", "Based on the passage above, ", "According to the text, ",
                       "Using the context, answer this question: "])


def join_lead(lead_in: str, question: str) -> str:
    """Questions start with a question word or preposition: lower-casing it after "According to ..., " is safe."""
    if lead_in.endswith(", "):
        return lead_in + question[:1].lower() + question[1:]
    return lead_in + question


def closed_qa(rng, kind, records, layout):
    rec = rng.choice(records)
    a = attr(kind, rng.choice(list(rec.facts)))
    q = fill(rng.choice(a.asks), kind, rec.name, rec.facts[a.key])
    return join_lead(lead(rng, layout), q), fill(rng.choice(a.answer), kind, rec.name, rec.facts[a.key])


def extraction(rng, kind, records, layout):
    if rng.random() < 0.45:      # reverse lookup: "Which ship has a red hull?"
        options = [(r, a) for r in records for a in kind.attrs
                   if a.which and a.key in r.facts and unique_value(records, a.key, r.facts[a.key])]
        if options:
            rec, a = rng.choice(options)
            v = rec.facts[a.key]
            q = a.which.format(v=v)
            wrap = rng.choice(["{q}", "{q} Give the name from the passage.", "From the passage: {q}",
                               "Find the {e} in the text that matches this description. {q}"])
            return wrap.format(q=q, e=kind.entity), fill(a.which_answer, kind, rec.name, v)
    rec = rng.choice(records)
    keys = rng.sample(list(rec.facts), 2)
    a1, a2 = attr(kind, keys[0]), attr(kind, keys[1])
    ref = kind.ref.format(N=rec.name)
    instr = rng.choice([
        "Extract the {l1} and the {l2} of {R} from the text.",
        "From the passage, extract the {l1} and {l2} of {R}.",
        "List the {l1} and the {l2} given for {R}.",
        "What are the {l1} and the {l2} of {R}? Answer using only the context.",
    ]).format(l1=a1.label, l2=a2.label, R=ref)
    v1, v2 = rec.facts[a1.key], rec.facts[a2.key]
    resp = rng.choice([f"{cap(a1.label)}: {v1}; {a2.label}: {v2}.",
                       f"For {ref}, the {a1.label} is {v1} and the {a2.label} is {v2}.",
                       f"{cap(a1.label)}: {v1}. {cap(a2.label)}: {v2}."])
    return instr, resp


def summarization(rng, kind, records, layout):
    rec = rng.choice(records)
    keys = rng.sample(list(rec.facts), min(len(rec.facts), rng.randint(3, 4)))
    frags = [attr(kind, k).frag.format(v=rec.facts[k]) for k in keys]
    ref = kind.ref.format(N=rec.name)
    instr = rng.choice(["Summarize what the passage says about {R} in one sentence.",
                        "In one sentence, summarize the entry for {R}.",
                        "Give a one-sentence summary of the information about {R}.",
                        "Write a short summary of the {e} {R} based on the text.",
                        "Briefly summarize the record for {R}."]).format(R=ref, e=kind.entity)
    return instr, f"{cap(ref)} {', '.join(frags[:-1])} and {frags[-1]}."


# ----------------------------------------------------------------- tasks without context
def open_qa(rng):
    t = rng.randrange(6)
    if t == 0:
        h = rng.randint(2, 12)
        return f"How many minutes are there in {h} hours?", f"There are {60 * h} minutes in {h} hours."
    if t == 1:
        w = rng.randint(2, 9)
        return f"How many days are there in {w} weeks?", f"There are {7 * w} days in {w} weeks."
    if t == 2:
        a, b = rng.randint(11, 99), rng.randint(11, 99)
        return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
    if t == 3:
        n = rng.randint(2, 9)
        return f"How many legs do {n} spiders have in total?", f"{n} spiders have {8 * n} legs in total."
    if t == 4:
        hh, mm, d = rng.randint(6, 20), rng.choice(range(0, 60, 5)), rng.choice(range(15, 120, 5))
        end = hh * 60 + mm + d
        return (f"A train leaves at {hh:02d}:{mm:02d} and the journey takes {d} minutes. When does it arrive?",
                f"It arrives at {end // 60:02d}:{end % 60:02d}.")
    m = rng.randint(2, 15)
    return f"How many seconds are there in {m} minutes?", f"There are {60 * m} seconds in {m} minutes."


def distinct(rng, make, k: int) -> list[str]:
    out = []
    while len(out) < k:
        x = make(rng)
        if x not in out:
            out.append(x)
    return out


def brainstorming(rng):
    t = rng.randrange(4)
    if t == 0:
        a, b, c = distinct(rng, lambda r: f"{r.choice(SHIP_A)} {r.choice(SHIP_B)}", 3)
        return "Suggest three names for a new sailing boat.", f"Here are three ideas: the {a}, the {b} and the {c}."
    if t == 1:
        a, b, c = distinct(rng, town_name, 3)
        return "Give me three names for a village in a fantasy story.", f"You could call it {a}, {b} or {c}."
    if t == 2:
        thing = rng.choice(["garden shed", "front door", "bicycle", "kitchen wall", "fishing boat"])
        cs = rng.sample(COLOURS, 4)
        return (f"List four colours I could paint my {thing}.",
                f"You could paint it {cs[0]}, {cs[1]}, {cs[2]} or {cs[3]}.")
    hobbies = ["learn to play the " + i for i in rng.sample(INSTRUMENTS, 2)] + ["take up bookbinding",
                                                                               "start keeping bees"]
    picks = rng.sample(hobbies, 3)
    return ("Suggest three new hobbies for a rainy winter.", f"You could {picks[0]}, {picks[1]} or {picks[2]}.")


ANIMALS = ["otter", "heron", "fox", "badger", "goat", "sparrow", "hedgehog", "salmon", "owl", "hare", "beaver"]
TOOLS = ["hammer", "saw", "chisel", "wrench", "screwdriver", "trowel", "pliers", "spanner", "rake", "drill"]


def classification(rng):
    t = rng.randrange(3)
    if t == 0:
        nums = rng.sample(range(1, 100), rng.randint(4, 6))
        return ("Classify each of these numbers as even or odd: " + ", ".join(map(str, nums)) + ".",
                ", ".join(f"{n} is {'even' if n % 2 == 0 else 'odd'}" for n in nums).capitalize() + ".")
    if t == 1:
        items = rng.sample(ANIMALS, 3) + rng.sample(TOOLS, 3)
        rng.shuffle(items)
        an = [i for i in items if i in ANIMALS]
        tl = [i for i in items if i in TOOLS]
        return ("Which of these are animals and which are tools: " + ", ".join(items) + "?",
                f"Animals: {', '.join(an)}. Tools: {', '.join(tl)}.")
    temps = rng.sample(range(-25, 30), 5)
    above = [f"{t} degrees" for t in temps if t > 0]
    below = [f"{t} degrees" for t in temps if t < 0]
    zero = [f"{t} degrees" for t in temps if t == 0]
    parts = []
    if above:
        parts.append("Above freezing: " + ", ".join(above) + ".")
    if below:
        parts.append("Below freezing: " + ", ".join(below) + ".")
    if zero:
        parts.append("Exactly at freezing: " + ", ".join(zero) + ".")
    return ("Classify these temperatures in degrees Celsius as above or below freezing: "
            + ", ".join(map(str, temps)) + ".", " ".join(parts))


# ----------------------------------------------------------------- assembly
CONTEXT_TASKS = {"closed_qa": (closed_qa, 0.45), "information_extraction": (extraction, 0.30),
                 "summarization": (summarization, 0.25)}
FREE_TASKS = {"open_qa": open_qa, "brainstorming": brainstorming, "classification": classification}


def generate(n: int = 600, seed: int = 0, free_frac: float = 0.12, context_tokens: tuple[int, int] = (200, 380),
             max_records: int = 10) -> list[dict]:
    """n samples: (1 - free_frac) with a context (layouts exactly balanced per category), the rest without.
    context_tokens / max_records: the passages' target length (SmolLM2 tokens) and record cap."""
    rng = random.Random(seed)
    n_free = round(n * free_frac)
    n_ctx = n - n_free
    plan = []
    cats = list(CONTEXT_TASKS)
    counts = [round(n_ctx * CONTEXT_TASKS[c][1]) for c in cats]
    counts[0] += n_ctx - sum(counts)
    for c, k in zip(cats, counts):
        plan += [(c, ("instruction_first", "context_first")[i % 2]) for i in range(k)]
    free = list(FREE_TASKS)
    plan += [(free[i % len(free)], "instruction_first") for i in range(n_free)]
    rng.shuffle(plan)
    out = []
    for cat, layout in plan:
        if cat in FREE_TASKS:
            instr, resp = FREE_TASKS[cat](rng)
            ctx = ""
        else:
            kind = rng.choice(KINDS)
            ctx, records = make_context(rng, kind, context_tokens, max_records)
            instr, resp = CONTEXT_TASKS[cat][0](rng, kind, records, layout)
        out.append({"instruction": articles(instr), "context": articles(ctx), "response": articles(resp),
                    "category": cat, "layout": layout})
    return out


def token_stats(path: Path) -> None:
    """SmolLM2 token lengths of the written file (needs sdtp_lib and the default model's tokenizer)."""
    import statistics
    import sys
    sys.path.insert(0, str(ROOT))
    from sdtp_lib.training.data import build_samples, load_instructions
    from sdtp_lib.models import load_model
    _, tok = load_model("smollm2-135m")
    recs = load_instructions(path)

    def desc(xs):
        xs = sorted(xs)
        return (f"mean {statistics.mean(xs):.0f}, median {statistics.median(xs):.0f}, min {xs[0]}, "
                f"max {xs[-1]}")
    ctx = [len(tok(r["context"], add_special_tokens=False)["input_ids"]) for r in recs if r["context"]]
    print(f"context tokens (samples with context, n={len(ctx)}): {desc(ctx)}")
    for seq_len in (512, 1024):
        samples = build_samples(recs, tok, seq_len=seq_len)
        print(f"seq_len {seq_len}: {len(samples)} samples | prompt tokens {desc([s.prompt_len for s in samples])}"
              f" | response tokens {desc([len(s.input_ids) - s.prompt_len for s in samples])}"
              f" | total {desc([len(s.input_ids) for s in samples])}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=600, help="number of samples (default 600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--stats", action="store_true", help="print SmolLM2 token-length stats of the written file")
    p.add_argument("--context-tokens", type=int, nargs=2, default=(200, 380), metavar=("LO", "HI"),
                   help="passage length range in SmolLM2 tokens (default 200 380; e.g. 1000 4000 for long prompts)")
    p.add_argument("--max-records", type=int, default=10, help="records per passage at most (default 10)")
    p.add_argument("--free-frac", type=float, default=0.12, help="share of samples without a context")
    args = p.parse_args(argv)
    lo, hi = args.context_tokens
    if not 0 < lo <= hi or args.max_records < 3 or not 0.0 <= args.free_frac < 1.0:
        p.error("need 0 < LO <= HI, --max-records >= 3 and 0 <= --free-frac < 1")
    if args.out.exists() and args.out.resolve() != OUT.resolve():
        p.error(f"{args.out} exists; remove it first (the default file is regenerated in place)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = generate(args.n, args.seed, args.free_frac, (lo, hi), args.max_records)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    from collections import Counter
    log.info("wrote %d samples to %s (%.0f KB)", len(rows), args.out, args.out.stat().st_size / 1024)
    log.info("categories: %s", dict(sorted(Counter(r["category"] for r in rows).items())))
    log.info("layouts: %s", dict(sorted(Counter(r["layout"] for r in rows).items())))
    if args.stats:
        token_stats(args.out)


if __name__ == "__main__":
    main()
