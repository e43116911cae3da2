"""Business words for codes: one table and one function, used by the reasons, the charts and the report.

``words`` reads a code inside a sentence ("Came in through paid social"); ``label`` starts it with a
capital for a table cell or an axis ("Paid social", "C-level", "IT services"). A code nobody listed
still reads well: underscores become spaces and known abbreviations keep their capitals.
"""

from __future__ import annotations

#: Codes whose plain spelling would read wrong (case, hyphens, abbreviations).
CODES: dict[str, str] = {
    "c_level": "C-level",
    "vp": "VP",
    "it_services": "IT services",
    "saas": "SaaS",
    "hr": "HR",
    "it": "IT",
    "seo": "SEO",
    "ppc": "PPC",
    "b2b": "B2B",
    "crm": "CRM",
    "paid_social": "paid social",
    "paid_search": "paid search",
    "individual": "individual contributor",
    "": "unknown",
    "nan": "unknown",
    "none": "unknown",
}
_WORDS = {"it": "IT", "hr": "HR", "saas": "SaaS", "vp": "VP", "seo": "SEO", "ppc": "PPC", "crm": "CRM"}


def words(code: object) -> str:
    """A code as words inside a sentence: 'it_services' -> 'IT services', 'paid_social' -> 'paid social'."""
    text = str(code).strip()
    key = text.lower()
    if key in CODES:
        return CODES[key]
    text = text.replace("c_level", "C-level").replace("_", " ")
    return " ".join(_WORDS.get(w.lower(), w) for w in text.split(" ")) if text else "unknown"


def label(code: object) -> str:
    """A code as a label: words with a capital first letter ('Paid social', 'C-level', 'IT services')."""
    text = words(code)
    return text[:1].upper() + text[1:]
