"""Built-in real facts about ~250 countries and territories, from the `countryinfo` package.

    from forgetless.knowledge.countries import country_facts, write_country_facts
    facts = country_facts()                    # deterministic: sorted by country, then COUNTRY_RELATIONS
    write_country_facts("countries.jsonl")     # returns the number of facts written

Relations: capital, currency, region, subregion, demonym, official_language, calling_code, tld,
iso_alpha2, iso_alpha3. Each fact carries its question and paraphrases (the built-in templates of
`facts.BUILTIN_TEMPLATES`) and aliases: accent-free spellings, "St." / "Saint", the other capitals,
currencies or official languages of the country, ISO 4217 codes and unambiguous short currency names.

The data gives currencies and languages as codes; the English names below were curated from ISO 4217
and ISO 639. Empty or missing values never make a fact. A few stale values are updated (renamed
currency codes, Croatia's euro) and entries that duplicate another's ISO code keep only the fuller one.
"""

from __future__ import annotations

import os
import random
import unicodedata
from collections import Counter
from collections.abc import Callable
from typing import Any

from forgetless.knowledge.facts import Fact, RelationTemplates, save_facts

COUNTRY_RELATIONS = (
    "capital",
    "currency",
    "region",
    "subregion",
    "demonym",
    "official_language",
    "calling_code",
    "tld",
    "iso_alpha2",
    "iso_alpha3",
)

# "Name|alias|alias" per ISO 4217 code.
CURRENCY_NAMES = {
    "AED": "UAE dirham|Emirati dirham", "AFN": "Afghan afghani", "ALL": "Albanian lek",
    "AMD": "Armenian dram", "AOA": "Angolan kwanza", "ARS": "Argentine peso", "AUD": "Australian dollar",
    "AWG": "Aruban florin", "AZN": "Azerbaijani manat", "BAM": "Bosnia and Herzegovina convertible mark",
    "BBD": "Barbadian dollar", "BDT": "Bangladeshi taka", "BGN": "Bulgarian lev", "BHD": "Bahraini dinar",
    "BIF": "Burundian franc", "BMD": "Bermudian dollar", "BND": "Brunei dollar", "BOB": "Bolivian boliviano",
    "BRL": "Brazilian real", "BSD": "Bahamian dollar", "BTN": "Bhutanese ngultrum",
    "BWP": "Botswana pula", "BYN": "Belarusian ruble", "BZD": "Belize dollar", "CAD": "Canadian dollar",
    "CDF": "Congolese franc", "CHF": "Swiss franc", "CLP": "Chilean peso",
    "CNY": "Chinese yuan|Renminbi|RMB", "COP": "Colombian peso", "CRC": "Costa Rican colón",
    "CSD": "Serbian dinar", "CUP": "Cuban peso", "CVE": "Cape Verdean escudo", "CZK": "Czech koruna",
    "DJF": "Djiboutian franc", "DKK": "Danish krone", "DOP": "Dominican peso", "DZD": "Algerian dinar",
    "EGP": "Egyptian pound", "ERN": "Eritrean nakfa", "ETB": "Ethiopian birr", "EUR": "Euro",
    "FJD": "Fijian dollar", "FKP": "Falkland Islands pound", "GBP": "Pound sterling|British pound",
    "GEL": "Georgian lari", "GHS": "Ghanaian cedi", "GIP": "Gibraltar pound", "GMD": "Gambian dalasi",
    "GNF": "Guinean franc", "GTQ": "Guatemalan quetzal", "GYD": "Guyanese dollar",
    "HKD": "Hong Kong dollar", "HNL": "Honduran lempira", "HTG": "Haitian gourde",
    "HUF": "Hungarian forint", "IDR": "Indonesian rupiah", "ILS": "Israeli new shekel|Israeli shekel",
    "INR": "Indian rupee", "IQD": "Iraqi dinar", "IRR": "Iranian rial", "ISK": "Icelandic króna",
    "JMD": "Jamaican dollar", "JOD": "Jordanian dinar", "JPY": "Japanese yen", "KES": "Kenyan shilling",
    "KGS": "Kyrgyzstani som", "KHR": "Cambodian riel", "KMF": "Comorian franc",
    "KPW": "North Korean won", "KRW": "South Korean won", "KWD": "Kuwaiti dinar",
    "KYD": "Cayman Islands dollar", "KZT": "Kazakhstani tenge", "LAK": "Lao kip",
    "LBP": "Lebanese pound", "LKR": "Sri Lankan rupee", "LRD": "Liberian dollar", "LSL": "Lesotho loti",
    "LYD": "Libyan dinar", "MAD": "Moroccan dirham", "MDL": "Moldovan leu", "MGA": "Malagasy ariary",
    "MKD": "Macedonian denar", "MMK": "Burmese kyat|Myanmar kyat", "MNT": "Mongolian tögrög|Mongolian tugrik",
    "MOP": "Macanese pataca", "MRU": "Mauritanian ouguiya", "MUR": "Mauritian rupee",
    "MVR": "Maldivian rufiyaa", "MWK": "Malawian kwacha", "MXN": "Mexican peso", "MYR": "Malaysian ringgit",
    "MZN": "Mozambican metical", "NAD": "Namibian dollar", "NGN": "Nigerian naira",
    "NIO": "Nicaraguan córdoba", "NOK": "Norwegian krone", "NPR": "Nepalese rupee",
    "NZD": "New Zealand dollar", "OMR": "Omani rial", "PAB": "Panamanian balboa", "PEN": "Peruvian sol",
    "PGK": "Papua New Guinean kina", "PHP": "Philippine peso", "PKR": "Pakistani rupee",
    "PLN": "Polish złoty", "PYG": "Paraguayan guaraní", "QAR": "Qatari riyal", "RON": "Romanian leu",
    "RSD": "Serbian dinar", "RUB": "Russian ruble|Russian rouble", "RWF": "Rwandan franc",
    "SAR": "Saudi riyal", "SBD": "Solomon Islands dollar", "SCR": "Seychellois rupee",
    "SDG": "Sudanese pound", "SEK": "Swedish krona", "SGD": "Singapore dollar", "SHP": "Saint Helena pound",
    "SLE": "Sierra Leonean leone", "SOS": "Somali shilling", "SRD": "Surinamese dollar",
    "SSP": "South Sudanese pound", "STN": "São Tomé and Príncipe dobra", "SVC": "Salvadoran colón",
    "SYP": "Syrian pound", "SZL": "Swazi lilangeni", "THB": "Thai baht", "TJS": "Tajikistani somoni",
    "TMT": "Turkmenistan manat", "TND": "Tunisian dinar", "TOP": "Tongan paʻanga", "TRY": "Turkish lira",
    "TTD": "Trinidad and Tobago dollar", "TWD": "New Taiwan dollar", "TZS": "Tanzanian shilling",
    "UAH": "Ukrainian hryvnia", "UGX": "Ugandan shilling", "USD": "United States dollar|US dollar",
    "UYU": "Uruguayan peso", "UZS": "Uzbekistani sum", "VES": "Venezuelan bolívar", "VND": "Vietnamese đồng",
    "VUV": "Vanuatu vatu", "WST": "Samoan tālā", "XAF": "Central African CFA franc|CFA franc",
    "XCD": "East Caribbean dollar", "XOF": "West African CFA franc|CFA franc", "XPF": "CFP franc",
    "YER": "Yemeni rial", "ZAR": "South African rand", "ZMW": "Zambian kwacha",
}  # fmt: skip
# Codes the data still uses for currencies that were redenominated or replaced.
CURRENCY_UPDATES = {"BYR": "BYN", "MRO": "MRU", "SLL": "SLE", "STD": "STN", "VEF": "VES", "ZMK": "ZMW"}
# Fund / accounting codes and discontinued currencies: not an answer to "what is the currency of X".
CURRENCY_SKIP = frozenset({"BOV", "CHE", "CHW", "CLF", "CUC", "USN", "USS", "UYI"})
COUNTRY_OVERRIDES: dict[str, dict[str, Any]] = {"Croatia": {"currencies": ["EUR"]}}  # euro since 2023

# "Name|alias" per ISO 639 code; the data also writes a few languages out in full.
LANGUAGE_NAMES = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "ay": "Aymara", "az": "Azerbaijani",
    "be": "Belarusian", "bg": "Bulgarian", "bi": "Bislama", "bn": "Bengali|Bangla", "bs": "Bosnian",
    "ca": "Catalan", "ch": "Chamorro", "cnr": "Montenegrin", "cs": "Czech", "da": "Danish", "de": "German",
    "dv": "Dhivehi|Maldivian", "dz": "Dzongkha", "el": "Greek", "en": "English", "es": "Spanish",
    "et": "Estonian", "fa": "Persian|Farsi", "ff": "Fula|Fulani", "fi": "Finnish", "fj": "Fijian",
    "fo": "Faroese", "fr": "French", "ga": "Irish|Irish Gaelic", "gn": "Guaraní", "gv": "Manx",
    "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "ht": "Haitian Creole", "hu": "Hungarian",
    "hy": "Armenian", "id": "Indonesian", "is": "Icelandic", "it": "Italian", "ja": "Japanese",
    "ka": "Georgian", "kg": "Kikongo|Kongo", "kk": "Kazakh", "kl": "Greenlandic|Kalaallisut", "km": "Khmer",
    "ko": "Korean", "ku": "Kurdish", "ky": "Kyrgyz|Kirghiz", "la": "Latin", "lb": "Luxembourgish",
    "ln": "Lingala", "lo": "Lao", "lt": "Lithuanian", "lu": "Tshiluba|Luba-Katanga", "lv": "Latvian",
    "mg": "Malagasy", "mh": "Marshallese", "mi": "Māori", "mk": "Macedonian", "mn": "Mongolian",
    "ms": "Malay", "mt": "Maltese", "my": "Burmese", "na": "Nauruan", "nb": "Norwegian Bokmål",
    "nd": "Northern Ndebele", "ne": "Nepali", "nl": "Dutch", "nn": "Norwegian Nynorsk", "no": "Norwegian",
    "nr": "Southern Ndebele", "ny": "Chichewa", "oc": "Occitan",
    "pa": "Papiamento",  # the data codes Aruba's Papiamento as "pa" (ISO 639-1 for Punjabi)
    "ps": "Pashto", "pt": "Portuguese", "qu": "Quechua", "rn": "Kirundi", "ro": "Romanian",
    "rs": "Serbian",  # the data's code for Serbian in Serbia (ISO 639-1 "sr")
    "ru": "Russian", "rw": "Kinyarwanda", "sg": "Sango", "si": "Sinhala", "sk": "Slovak",
    "sl": "Slovene|Slovenian", "sm": "Samoan", "sn": "Shona", "so": "Somali", "sq": "Albanian",
    "sr": "Serbian", "ss": "Swazi|Swati", "st": "Sesotho|Southern Sotho", "sv": "Swedish", "sw": "Swahili",
    "ta": "Tamil", "tg": "Tajik", "th": "Thai", "ti": "Tigrinya", "tk": "Turkmen", "tn": "Setswana|Tswana",
    "to": "Tongan", "tr": "Turkish", "ts": "Tsonga", "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek",
    "ve": "Venda", "vi": "Vietnamese", "xh": "Xhosa", "zh": "Chinese|Mandarin", "zu": "Zulu",
}  # fmt: skip

CAPITAL_ALIASES = {
    "Washington D.C.": "Washington|Washington, D.C.", "Kyiv": "Kiev", "Nur-Sultan": "Astana",
    "Naypyidaw": "Nay Pyi Taw|Naypyitaw", "City of Victoria": "Victoria", "Ulaanbaatar": "Ulan Bator",
    "City of San Marino": "San Marino", "Vatican City State": "Vatican City",
}  # fmt: skip
SUBJECT_NAMES = {
    "Palestine, State of": "State of Palestine", "Virgin Islands, British": "British Virgin Islands",
    "Virgin Islands, U.S.": "United States Virgin Islands", "Antilles néerlandaises": "Netherlands Antilles",
}  # fmt: skip
SUBREGION_NAMES = {"South-eastern Asia": "South-Eastern Asia"}
SUBREGION_ALIASES = {
    "South-Eastern Asia": "Southeast Asia|South East Asia", "Northern America": "North America",
    "Sub-Saharan Africa": "Subsaharan Africa", "Australia and New Zealand": "Australasia",
}  # fmt: skip

Answer = tuple[str, list[str]]


def country_facts() -> list[Fact]:
    """All country facts, sorted by country name then relation; deterministic."""
    templates = RelationTemplates()
    facts: list[Fact] = []
    for entry in _entries():
        subject = SUBJECT_NAMES.get(entry["name"], entry["name"]).strip()
        for relation in COUNTRY_RELATIONS:
            answer = _EXTRACTORS[relation](entry)
            if answer is None or (relation == "demonym" and _same(answer[0], subject)):
                continue  # no value, or a demonym that just repeats the name (the question gives it away)
            facts.append(_make_fact(subject, relation, answer, templates))
    return facts


def sample_country_facts(relations, per_relation: int, salt: str) -> list[Fact]:
    """A seeded sample of `per_relation` country facts of each relation, in `relations` order; the draw of
    relation r is seeded with `"{salt}/{r}"` (the demo, `learn` and the experiments each use their own)."""
    facts, chosen = country_facts(), []
    for relation in relations:
        pool = [f for f in facts if f.relation == relation]
        chosen += random.Random(f"{salt}/{relation}").sample(pool, min(per_relation, len(pool)))
    return chosen


def country_names() -> set[str]:
    """Every country name in the data (original and display spellings), for collision checks."""
    from countryinfo import CountryInfo

    names = {info["name"] for info in CountryInfo.all().values()}
    return names | set(SUBJECT_NAMES.values())


def write_country_facts(path: str | os.PathLike) -> int:
    """Write all country facts to a JSONL file (atomically); returns how many were written."""
    facts = country_facts()
    save_facts(path, facts)
    return len(facts)


def _entries() -> list[dict[str, Any]]:
    """The data's entries, sorted by name, without duplicates of another entry's ISO alpha-3 code."""
    from countryinfo import CountryInfo

    entries = [dict(info, **COUNTRY_OVERRIDES.get(info["name"], {})) for info in CountryInfo.all().values()]
    best: dict[str, dict[str, Any]] = {}
    for entry in sorted(entries, key=lambda e: e["name"].casefold()):
        code = (entry.get("ISO") or {}).get("alpha3") or f"name:{entry['name']}"
        if code not in best or _filled(entry) > _filled(best[code]):
            best[code] = entry
    return sorted(best.values(), key=lambda e: SUBJECT_NAMES.get(e["name"], e["name"]).casefold())


def _filled(entry: dict[str, Any]) -> int:
    fields = ("capital", "currencies", "languages", "demonym", "callingCodes", "tld", "region", "subregion")
    iso = entry.get("ISO") or {}
    return sum(1 for key in fields if entry.get(key)) + (1 if iso.get("numeric") else 0)


def _make_fact(subject: str, relation: str, answer: Answer, templates: RelationTemplates) -> Fact:
    obj, extras = answer
    aliases = [a for a in dict.fromkeys(_variants([obj, *extras])) if a and a != obj]
    questions = templates.render_all(relation, subject)
    return Fact(subject, relation, obj, aliases=aliases, question=questions[0], paraphrases=questions[1:])


def _variants(answers: list[str]) -> list[str]:
    """Each answer, then its accent-free spelling and its "St." / "Saint" twin where they differ."""
    out: list[str] = []
    for answer in (a.strip() for a in answers):
        out += [answer, _fold(answer)]
        if answer.startswith("St. "):
            out.append("Saint " + answer[4:])
        elif answer.startswith("Saint "):
            out.append("St. " + answer[6:])
    return out


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("ʻ", "'")


def _same(a: str, b: str) -> bool:
    return _fold(a).casefold().strip() == _fold(b).casefold().strip()


def _split(raw: Any, separators: str = "/") -> list[str]:
    """A value or list of values, split on any of the separator characters, stripped, empties dropped."""
    items = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            continue
        for sep in separators[1:]:
            item = item.replace(sep, separators[0])
        out += [part.strip() for part in item.split(separators[0]) if part.strip()]
    return out


def _pipe(value: str) -> list[str]:
    return [part for part in value.split("|") if part]


# --------------------------------------------------------------------------------- per relation


def _capital(entry: dict[str, Any]) -> Answer | None:
    capitals = _split(entry.get("capital"))
    if not capitals:
        return None
    extras = capitals[1:] + [a for c in capitals for a in _pipe(CAPITAL_ALIASES.get(c, ""))]
    return capitals[0], extras


def _currency(entry: dict[str, Any]) -> Answer | None:
    codes = [CURRENCY_UPDATES.get(c, c) for c in entry.get("currencies") or [] if isinstance(c, str)]
    codes = [c for c in dict.fromkeys(codes) if c in CURRENCY_NAMES and c not in CURRENCY_SKIP]
    if not codes:
        return None
    names = [_pipe(CURRENCY_NAMES[code]) for code in codes]
    extras = [alias for code, parts in zip(codes, names, strict=True) for alias in [*parts, code]]
    extras += [short for parts in names if (short := _short_currency(parts[0]))]
    return names[0][0], extras


def _short_currency(name: str) -> str | None:
    """The bare unit ("yen" for "Japanese yen") when no other currency shares it."""
    unit = name.split()[-1]
    return unit if len(name.split()) > 1 and _UNIT_COUNTS[unit.casefold()] == 1 else None


_UNIT_COUNTS = Counter(_pipe(v)[0].split()[-1].casefold() for v in set(CURRENCY_NAMES.values()))


def _region(entry: dict[str, Any]) -> Answer | None:
    region = (entry.get("region") or "").strip()
    return (region, []) if region else None


def _subregion(entry: dict[str, Any]) -> Answer | None:
    sub = (entry.get("subregion") or "").strip()
    sub = SUBREGION_NAMES.get(sub, sub)
    return (sub, _pipe(SUBREGION_ALIASES.get(sub, ""))) if sub else None


def _demonym(entry: dict[str, Any]) -> Answer | None:
    parts = _split(entry.get("demonym"), "/,")
    if not parts:
        return None
    return (" and ".join(parts), parts) if len(parts) > 1 else (parts[0], [])


def _language(entry: dict[str, Any]) -> Answer | None:
    names: list[list[str]] = []
    for code in entry.get("languages") or []:
        if isinstance(code, str) and code.strip():
            named = LANGUAGE_NAMES.get(code.strip())
            names.append(_pipe(named) if named else [code.strip()] if len(code.strip()) > 3 else [])
    names = [parts for parts in names if parts]
    if not names:
        return None
    return names[0][0], [alias for parts in names for alias in parts]


def _calling_code(entry: dict[str, Any]) -> Answer | None:
    codes = [c.replace("+", "").replace(" ", "") for c in _split(entry.get("callingCodes"))]
    codes = [c for c in codes if c.replace("-", "").isdigit()]
    forms = [_dial_forms(code) for code in codes]
    return (forms[0][0], [form for group in forms for form in group]) if forms else None


def _dial_forms(code: str) -> list[str]:
    """Dialling forms: +1-684, +1684 and 1684 for North American numbering; +33 and 33 otherwise."""
    digits = code.replace("-", "")
    if len(digits) == 4 and digits.startswith("1"):
        return [f"+1-{digits[1:]}", f"+{digits}", digits]
    return [f"+{code}", digits]


def _tld(entry: dict[str, Any]) -> Answer | None:
    domains = [d.lower() for d in _split(entry.get("tld"))]
    domains = [d for d in domains if d.startswith(".") and d[1:].isascii() and d[1:].isalpha()]
    return (domains[0], domains[1:]) if domains else None


def _iso(alpha: str) -> Callable[[dict[str, Any]], Answer | None]:
    def extract(entry: dict[str, Any]) -> Answer | None:
        iso = entry.get("ISO") or {}
        code = str(iso.get(alpha) or "").strip().upper()
        # Only officially assigned codes (with an ISO numeric code): not Wales's "GB", not withdrawn "AN".
        return (code, []) if code.isalpha() and iso.get("numeric") else None

    return extract


_EXTRACTORS: dict[str, Callable[[dict[str, Any]], Answer | None]] = {
    "capital": _capital,
    "currency": _currency,
    "region": _region,
    "subregion": _subregion,
    "demonym": _demonym,
    "official_language": _language,
    "calling_code": _calling_code,
    "tld": _tld,
    "iso_alpha2": _iso("alpha2"),
    "iso_alpha3": _iso("alpha3"),
}
