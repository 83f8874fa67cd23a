"""Text normalisation for speaking on the phone.

What an LLM writes is not what a voice should say: "Call 555-123-4567 at 3:30 pm on 12/03 for
$19.99" must come out as digits one by one, a time, a date and an amount. espeak-ng would read a
phone number as "five hundred fifty-five", so numbers are spelled out here, in words, before
phonemizing. `normalize(text)` is pure and fast (regexes, no model).
"""
from __future__ import annotations

import re

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORD = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
        "twelve": "twelfth"}
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_MONTH_ABBR = {m[:3].lower(): m for m in _MONTHS} | {"sept": "September"}

_ABBREVIATIONS = {
    "Dr.": "Doctor", "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miz", "St.": "Street", "Ave.": "Avenue",
    "Rd.": "Road", "Blvd.": "Boulevard", "Apt.": "Apartment", "Inc.": "Incorporated", "Ltd.": "Limited",
    "Co.": "Company", "Corp.": "Corporation", "Jr.": "Junior", "Sr.": "Senior", "approx.": "approximately",
    "e.g.": "for example", "i.e.": "that is", "etc.": "et cetera", "vs.": "versus", "No.": "number",
    "Mon.": "Monday", "Tue.": "Tuesday", "Wed.": "Wednesday", "Thu.": "Thursday", "Fri.": "Friday",
    "Sat.": "Saturday", "Sun.": "Sunday", "min.": "minutes", "hr.": "hour", "hrs.": "hours",
    "ext.": "extension", "Ext.": "extension", "dept.": "department", "Dept.": "department",
}
_UNIT_WORDS = {"%": "percent", "&": "and", "@": "at", "#": "number", "+": "plus"}


def number_words(n: int) -> str:
    """0 <= n < 10**12 in English words ("one thousand two hundred five")."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    for size, word in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= size:
            rest = n % size
            return number_words(n // size) + f" {word}" + ("" if rest == 0 else " " + number_words(rest))
    return str(n)


def ordinal_words(n: int) -> str:
    words = number_words(n)
    head, _, last = words.rpartition(" ")
    if last in _ORD:
        last = _ORD[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return (head + " " + last).strip()


def digits(s: str) -> str:
    """Each digit as a word: '0117' -> 'zero one one seven'."""
    return " ".join(_ONES[int(c)] for c in s if c.isdigit())


def _year(y: int) -> str:
    if 2000 <= y < 2010:
        return number_words(y)
    if 1000 <= y < 10000 and y % 100 != 0:
        return number_words(y // 100) + " " + (("oh " + _ONES[y % 100]) if y % 100 < 10 else number_words(y % 100))
    if y % 100 == 0 and 1000 <= y < 10000 and y % 1000 != 0:
        return number_words(y // 100) + " hundred"
    return number_words(y)


def _phone(m: re.Match) -> str:
    groups = re.findall(r"\d+", m.group(0))
    lead = "plus " if m.group(0).lstrip().startswith("+") else ""
    return lead + ", ".join(digits(g) for g in groups)


def _time(m: re.Match) -> str:
    h, mins, ampm = int(m.group(1)), int(m.group(2)), (m.group(3) or "").lower().replace(".", "")
    if h > 23 or mins > 59:
        return m.group(0)
    if mins == 0:
        spoken = number_words(h) + (" o'clock" if not ampm else "")
    elif mins < 10:
        spoken = number_words(h) + " oh " + _ONES[mins]
    else:
        spoken = number_words(h) + " " + number_words(mins)
    if ampm:
        spoken += " " + " ".join(ampm.upper()) + ("." if m.group(0).endswith(".") else "")
    return spoken


def _ampm(m: re.Match) -> str:
    h = int(m.group(1))
    end = "." if m.group(0).endswith(".") else ""   # "at 9 a.m." may end the sentence
    return number_words(h) + " " + " ".join(m.group(2).lower().replace(".", "").upper()) + end


def _money(m: re.Match) -> str:
    symbol, whole, cents = m.group(1), m.group(2).replace(",", ""), m.group(3)
    unit = {"$": ("dollar", "cent"), "£": ("pound", "penny"), "€": ("euro", "cent")}[symbol]
    w = int(whole) if whole else 0
    parts = []
    if w or not cents:
        parts.append(f"{number_words(w)} {unit[0]}{'' if w == 1 else 's'}")
    if cents and int(cents):
        c = int(cents.ljust(2, "0")[:2])
        sub = unit[1] if c == 1 else ("pence" if unit[1] == "penny" else unit[1] + "s")
        parts.append(f"{number_words(c)} {sub}")
    return " and ".join(parts)


def _date_numeric(m: re.Match) -> str:
    a, b, y = int(m.group(1)), int(m.group(2)), m.group(3)
    month, day = (a, b) if a <= 12 else (b, a)     # US order unless the first cannot be a month
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group(0)
    text = f"{_MONTHS[month - 1]} {ordinal_words(day)}"
    if y:
        yy = int(y)
        text += ", " + _year(yy + 2000 if yy < 100 else yy)
    return text


def _date_iso(m: re.Match) -> str:
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return m.group(0)
    return f"{_MONTHS[mo - 1]} {ordinal_words(d)}, {_year(y)}"


def _month_day(m: re.Match) -> str:
    month = _MONTH_ABBR[m.group(1)[:4].lower().rstrip(".")[:3] if m.group(1)[:4].lower() != "sept" else "sept"]
    text = f"{month} {ordinal_words(int(m.group(2)))}"
    if m.group(3):
        text += ", " + _year(int(m.group(3)))
    return text


def _ordinal(m: re.Match) -> str:
    return ordinal_words(int(m.group(1)))


def _plain_number(m: re.Match) -> str:
    s = m.group(0).replace(",", "")
    if "." in s:
        whole, frac = s.split(".", 1)
        return f"{number_words(int(whole or 0))} point {digits(frac)}"
    if len(s) > 1 and s.startswith("0"):
        return digits(s)
    n = int(s)
    return number_words(n) if n < 10**12 else digits(s)


_PHONE = re.compile(r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}(?![\w])"
                    r"|(?<![\w.$])\d{3}-\d{4}(?![\w-])")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\s*([ap]\.?m\.?)?(?![\w:])", re.I)
_AMPM = re.compile(r"\b(\d{1,2})\s*([ap]\.?m\.?)(?!\w)", re.I)
_MONEY = re.compile(r"([$£€])\s?(\d[\d,]*)?(?:\.(\d{1,2}))?(?!\d)")
_DATE_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_DATE_NUM = re.compile(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2}|\d{4}))?\b")
_MONTH_DAY = re.compile(r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)[a-z]*\.?\s+(\d{1,2})(?:st|nd|rd|th)?"
                        r"(?:,?\s+(\d{4}))?\b")
_ORDINAL = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_PERCENT = re.compile(r"(\d)\s*%")


def normalize(text: str) -> str:
    """Rewrite numbers, phone numbers, times, dates, money and abbreviations as words."""
    t = re.sub(r"[*_`#]+(?=\S)|(?<=\S)[*_`]+", "", text)          # markdown emphasis from LLMs
    t = re.sub(r"\s+", " ", t).strip()
    for abbr, full in _ABBREVIATIONS.items():
        t = re.sub(r"(?<!\w)" + re.escape(abbr) + r"(?=[\s,;:!?)]|$)", full, t)
    t = _PHONE.sub(_phone, t)
    t = _DATE_ISO.sub(_date_iso, t)
    t = _MONEY.sub(_money, t)
    t = _TIME.sub(_time, t)
    t = _AMPM.sub(_ampm, t)
    t = _MONTH_DAY.sub(_month_day, t)
    t = _DATE_NUM.sub(_date_numeric, t)
    t = _ORDINAL.sub(_ordinal, t)
    t = _PERCENT.sub(r"\1 percent", t)
    t = _NUMBER.sub(_plain_number, t)
    for sym, word in _UNIT_WORDS.items():
        t = t.replace(f" {sym} ", f" {word} ")
    return re.sub(r"\s+", " ", t).strip()


_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=\S)")


def split_sentences(text: str, max_chars: int = 220, first_max_chars: int = 24) -> list[str]:
    """Sentences of already-normalised text; very long ones are split at commas. The first sentence
    is cut at its first comma when longer than `first_max_chars`: the voice's cost grows with the
    length of what it speaks, and the first audio is what the caller waits for."""
    out = []
    for s in _SENTENCE_END.split(text.strip()):
        s = s.strip()
        while len(s) > max_chars:
            cut = s.rfind(", ", 0, max_chars)
            if cut < max_chars // 3:
                cut = s.rfind(" ", 0, max_chars)
            if cut <= 0:
                break
            out.append(s[:cut + 1].strip())
            s = s[cut + 1:].strip()
        if s:
            out.append(s)
    if out and len(out[0]) > first_max_chars:
        head, sep, rest = out[0].partition(", ")
        if sep and rest and len(head) >= 2:
            out[0:1] = [head + ",", rest]
    return out
