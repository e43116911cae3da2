"""Reasons in business words: one sentence template per model feature, and the top reasons per lead.

The API, the offline scorer and the explanation report all turn LightGBM's own SHAP contributions
(``booster.predict(X, pred_contrib=True)``, log-odds) into sentences through ``ReasonBuilder``, so a
lead's reasons read the same everywhere.

Templates for the windowed families (``cnt_<event>_<w>d``, ``days_since_last_<event>``,
``web_active_days_<w>d``) are generated from the feature spec, so a spec with other windows or event
types is covered automatically; the remaining features have explicit templates in ``TEMPLATES``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from leadscore.config import BaselineParams
from leadscore.features.spec import FeatureSpec
from leadscore.models.labels import words
from leadscore.models.missing import is_missing, missing_mask


@dataclass(frozen=True)
class Reason:
    """One reason for a lead's score: the feature, its sentence, its SHAP contribution in log-odds."""

    feature: str
    text: str
    contribution: float


@dataclass(frozen=True)
class Template:
    """How a feature reads in business words: a short label (tables, charts) and a sentence per value."""

    label: str
    render: Callable[[object], str]


# --------------------------------------------------------------------------------------------------
# value helpers


def _num(value: object) -> float:
    """A value as float; None, NA and non-numbers become NaN."""
    if value is None:
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _int(value: float) -> str:
    """Whole numbers with thousands separators ('1,250')."""
    return f"{round(value):,}"


def _times(n: float, one: str = "once", many: str = "{n} times") -> str:
    k = round(n)
    return one if k == 1 else many.format(n=_int(n))


def _plural(n: float, word: str, plural: str | None = None) -> str:
    k = round(n)
    return f"{_int(n)} {word if k == 1 else (plural or word + 's')}"


def _days(d: float) -> str:
    """'today', 'yesterday', '5 days ago', '3 weeks ago', '4 months ago'."""
    if d < 1:
        return "today"
    if d < 2:
        return "yesterday"
    if d < 14:
        return f"{int(d)} days ago"
    if d < 60:
        return f"{int(d // 7)} weeks ago"
    return f"{int(d // 30)} months ago"


def _window(w: int) -> str:
    return "in the last day" if w == 1 else f"in the last {w} days"


def _money(v: float) -> str:
    if v >= 1e9:
        return f"${v / 1e9:.1f}B"
    if v >= 1e6:
        return f"${v / 1e6:.1f}M"
    if v >= 1e3:
        return f"${v / 1e3:.0f}K"
    return f"${v:.0f}"


def _words(value: object) -> str:
    """'it_services' -> 'IT services', 'paid_search' -> 'paid search' (the one table: ``models.labels``)."""
    return words(value)


# --------------------------------------------------------------------------------------------------
# event phrases: (noun for labels, "did it N times" sentence, "did not do it" sentence, "last did it" verb)


@dataclass(frozen=True)
class _EventWords:
    noun: str  # label: "Pricing page visits"
    did: Callable[[float], str]  # "Visited the pricing page 3 times"
    never: str  # "Did not visit the pricing page"
    last: str  # "Last visited the pricing page"
    never_ever: str  # "Never visited the pricing page"
    one: str = ""  # singular noun for labels: "pricing page visit"


EVENT_WORDS: dict[str, _EventWords] = {
    "page_view": _EventWords(
        "Website page views",
        lambda n: f"Viewed {_plural(n, 'website page')}",
        "No website visits",
        "Last visited the website",
        "Never visited the website",
        "website visit",
    ),
    "pricing_view": _EventWords(
        "Pricing page visits",
        lambda n: f"Visited the pricing page {_times(n)}",
        "Did not visit the pricing page",
        "Last visited the pricing page",
        "Never visited the pricing page",
        "pricing page visit",
    ),
    "demo_view": _EventWords(
        "Product demo page views",
        lambda n: f"Viewed the product demo page {_times(n)}",
        "Did not view the product demo page",
        "Last viewed the product demo page",
        "Never viewed the product demo page",
        "demo page view",
    ),
    "content_download": _EventWords(
        "Gated content downloads",
        lambda n: f"Downloaded {_plural(n, 'piece', 'pieces')} of gated content",
        "Downloaded no gated content",
        "Last downloaded gated content",
        "Never downloaded gated content",
        "content download",
    ),
    "webinar_register": _EventWords(
        "Webinar registrations",
        lambda n: f"Registered for {_plural(n, 'webinar')}",
        "Did not register for a webinar",
        "Last registered for a webinar",
        "Never registered for a webinar",
        "webinar registration",
    ),
    "webinar_attend": _EventWords(
        "Webinars attended",
        lambda n: f"Attended {_plural(n, 'webinar')}",
        "Attended no webinar",
        "Last attended a webinar",
        "Never attended a webinar",
        "webinar attended",
    ),
    "email_open": _EventWords(
        "Marketing e-mails opened",
        lambda n: f"Opened {_plural(n, 'marketing e-mail')}",
        "Opened no marketing e-mail",
        "Last opened a marketing e-mail",
        "Never opened a marketing e-mail",
        "e-mail opened",
    ),
    "email_click": _EventWords(
        "Marketing e-mail clicks",
        lambda n: f"Clicked links in marketing e-mails {_times(n)}",
        "Clicked no marketing e-mail",
        "Last clicked a marketing e-mail",
        "Never clicked a marketing e-mail",
        "e-mail click",
    ),
    "form_submit": _EventWords(
        "Forms submitted",
        lambda n: f"Submitted {_plural(n, 'form')}",
        "Submitted no form",
        "Last submitted a form",
        "Never submitted a form",
        "form submitted",
    ),
    "demo_request": _EventWords(
        "Demo requests",
        lambda n: "Requested a demo" if round(n) == 1 else f"Requested a demo {_times(n)}",
        "Did not request a demo",
        "Last requested a demo",
        "Never requested a demo",
        "demo request",
    ),
    "trial_signup": _EventWords(
        "Trial sign-ups",
        lambda n: "Signed up for a free trial" if round(n) == 1 else f"Signed up for a trial {_times(n)}",
        "Did not sign up for a trial",
        "Last signed up for a trial",
        "Never signed up for a trial",
        "trial sign-up",
    ),
    "meeting_booked": _EventWords(
        "Meetings booked",
        lambda n: f"Booked {_plural(n, 'meeting')} with sales",
        "Booked no meeting",
        "Last booked a meeting",
        "Never booked a meeting",
        "meeting booked",
    ),
    "unsubscribe": _EventWords(
        "Unsubscribes",
        lambda n: (
            "Unsubscribed from marketing e-mails"
            if round(n) == 1
            else f"Unsubscribed {_times(n)} from marketing e-mails"
        ),
        "Did not unsubscribe",
        "Last unsubscribed",
        "Never unsubscribed",
        "unsubscribe",
    ),
}


def _event_words(event_type: str) -> _EventWords:
    """Known phrases, or generic ones for an event type this module has never heard of."""
    if event_type in EVENT_WORDS:
        return EVENT_WORDS[event_type]
    name = _words(event_type)
    return _EventWords(
        f"'{name}' events",
        lambda n: f"{_plural(n, f'{name!r} event')}",
        f"No '{name}' event",
        f"Last '{name}' event",
        f"No '{name}' event ever",
        f"'{name}' event",
    )


def _count_template(event_type: str, window: int) -> Template:
    words = _event_words(event_type)

    def render(value: object) -> str:
        n = _num(value)
        if math.isnan(n):
            return f"No data on {words.noun.lower()} {_window(window)}"
        if round(n) <= 0:
            return f"{words.never} {_window(window)}"
        return f"{words.did(n)} {_window(window)}"

    return Template(f"{words.noun} (last {window} days)", render)


def _recency_template(event_type: str) -> Template:
    words = _event_words(event_type)

    def render(value: object) -> str:
        d = _num(value)
        if math.isnan(d):
            return words.never_ever
        return f"{words.last} {_days(d)}"

    return Template(f"Days since the last {words.one}", render)


def _active_days_template(window: int) -> Template:
    def render(value: object) -> str:
        n = _num(value)
        if math.isnan(n) or round(n) <= 0:
            return f"Not on the website {_window(window)}"
        if round(n) == 1:
            return f"On the website on 1 day {_window(window)}"
        return f"On the website on {_int(n)} different days {_window(window)}"

    return Template(f"Days active on the website (last {window} days)", render)


def _flag(label: str, yes: str, no: str, unknown: str | None = None) -> Template:
    def render(value: object) -> str:
        v = _num(value)
        if math.isnan(v):
            return unknown or f"{label}: unknown"
        return yes if v >= 0.5 else no

    return Template(label, render)


def _numeric(label: str, fmt: Callable[[float], str], unknown: str) -> Template:
    def render(value: object) -> str:
        v = _num(value)
        return unknown if math.isnan(v) else fmt(v)

    return Template(label, render)


def _category(label: str, fmt: Callable[[str], str], unknown: str, special: Mapping[str, str]) -> Template:
    def render(value: object) -> str:
        if is_missing(value):
            return unknown
        text = str(value).strip().lower()
        return special.get(text) or fmt(text)

    return Template(label, render)


_STAGE_NAMES = {
    0: "Not in the sales funnel yet",
    1: "Already an MQL",
    2: "Already accepted by sales (SAL)",
    3: "Already sales-qualified (SQL)",
    4: "Already an open opportunity",
    5: "Deal already closed",
}

_SENIORITY = {
    "c_level": "C-level title",
    "vp": "VP-level title",
    "director": "Director-level title",
    "manager": "Manager-level title",
    "owner": "Owner or founder",
    "individual": "Individual contributor (no senior title)",
    "student": "Student or intern",
}

_EMAIL = {
    "personal": "Personal e-mail address",
    "business": "Business e-mail address",
    "competitor": "E-mail address at a competitor",
}

_SOURCES = {
    "organic_search": "Came in through organic search",
    "paid_search": "Came in through paid search ads",
    "paid_social": "Came in through paid social ads",
    "webinar": "Came in through a webinar",
    "content": "Came in through gated content",
    "referral": "Came in through a referral",
    "event": "Came in through an event",
    "outbound": "Came in through outbound prospecting",
    "partner": "Came in through a partner",
}


def _fixed_templates(spec: FeatureSpec, baseline: BaselineParams | None) -> dict[str, Template]:
    """Explicit templates for the features that are not generated per window/event type."""
    lo, hi = spec.params.sweet_spot
    spot = f"{lo:,}–{hi:,}"
    active = spec.active_day_features
    rv_window = active[0][1] if active else 7
    w_max = spec.max_window
    w30 = min([w for w in spec.windows if w >= 30], default=spec.max_window)
    short = {
        "pricing_view": "pricing page",
        "demo_view": "demo page",
        "demo_request": "demo request",
        "trial_signup": "trial",
    }
    intent = ", ".join(short.get(t, _words(t)) for t in spec.high_intent_types) or "none configured"

    def employees(v: float) -> str:
        where = f"in the {spot} sweet spot" if lo <= v <= hi else f"outside the {spot} sweet spot"
        return f"Company size {_plural(v, 'employee')} ({where})"

    senior = baseline.senior_levels if baseline is not None else BaselineParams().senior_levels

    def seniority(text: str) -> str:
        return _SENIORITY.get(text, f"Seniority: {_words(text)}")

    return {
        "days_since_last_event": Template(
            "Days since last activity",
            lambda v: (
                "No recorded activity yet" if math.isnan(_num(v)) else f"Last activity {_days(_num(v))}"
            ),
        ),
        "events_total": _numeric(
            "Interactions in total",
            lambda v: (
                "No tracked interactions yet"
                if round(v) <= 0
                else f"{_plural(v, 'tracked interaction')} in total"
            ),
            "No tracked interactions yet",
        ),
        "engagement_decayed": _numeric(
            "Recent engagement score",
            lambda v: (
                f"Recent engagement score {v:.0f} (recent actions weigh more)"
                if v >= 0.5
                else "Little or no recent engagement"
            ),
            "Little or no recent engagement",
        ),
        "stage_rank": Template(
            "Funnel stage reached",
            lambda v: (
                "Not in the sales funnel yet"
                if math.isnan(_num(v))
                else _STAGE_NAMES.get(round(_num(v)), f"Funnel stage {int(_num(v))}")
            ),
        ),
        "days_since_stage_change": _numeric(
            "Days since last funnel stage change",
            lambda v: f"Last moved in the funnel {_days(v)}",
            "Never moved in the funnel",
        ),
        "times_recycled": _numeric(
            "Times recycled to marketing",
            lambda v: (
                "Never recycled back to marketing"
                if round(v) <= 0
                else f"Recycled back to marketing {_times(v)}"
            ),
            "Never recycled back to marketing",
        ),
        "days_since_sql": _numeric(
            "Days since sales-qualified",
            lambda v: f"Was sales-qualified (SQL) {_days(v)}",
            "Never sales-qualified before",
        ),
        "return_visit_7d": _flag(
            "Return visits to the website",
            f"Came back to the website on several days {_window(rv_window)}",
            f"No return visit to the website {_window(rv_window)}",
        ),
        "email_click_rate": _numeric(
            "E-mail click rate",
            lambda v: f"Clicks {v:.0%} of opened marketing e-mails (last {w_max} days)",
            f"Opened no marketing e-mail {_window(w_max)}",
        ),
        "high_intent_30d": _numeric(
            "High-intent actions (last 30 days)",
            lambda v: (
                f"No high-intent action ({intent}) {_window(w30)}"
                if round(v) <= 0
                else f"{_plural(v, 'high-intent action')} ({intent}) {_window(w30)}"
            ),
            f"No high-intent action {_window(w30)}",
        ),
        "unsubscribed": _flag(
            "Unsubscribed from e-mails",
            "Unsubscribed from marketing e-mails",
            "Subscribed to marketing e-mails",
        ),
        "employees": _numeric("Company size (employees)", employees, "Company size unknown"),
        "annual_revenue": _numeric(
            "Company annual revenue",
            lambda v: f"Company revenue {_money(v)} a year",
            "Company revenue unknown",
        ),
        "tech_stack_size": _numeric(
            "Tools in the company's tech stack",
            lambda v: (
                f"Company uses {_plural(v, 'known tool')}"
                if round(v) > 0
                else "No known tools in the company's tech stack"
            ),
            "Company tech stack unknown",
        ),
        "in_sweet_spot": _flag(
            f"Company size in the {spot} sweet spot",
            f"Company size in the {spot} employee sweet spot",
            f"Company size outside the {spot} employee sweet spot",
            "Company size unknown",
        ),
        "target_industry": _flag(
            "Target industry",
            "Company in a target industry",
            "Company not in a target industry",
            "Industry unknown",
        ),
        "is_student": _flag("Student", "Student or intern", "Not a student"),
        "lead_age_days": _numeric(
            "Days since the lead was created",
            lambda v: f"Lead created {_days(v)}",
            "Lead creation date unknown",
        ),
        "industry": _category("Industry", lambda t: f"Industry: {_words(t)}", "Industry unknown", {}),
        "country": _category(
            "Country",
            lambda t: f"Based in {t.upper() if len(t) <= 3 else _words(t).title()}",
            "Country unknown",
            {},
        ),
        "lead_source": _category(
            "Lead source", lambda t: f"Came in through {_words(t)}", "Lead source unknown", _SOURCES
        ),
        "seniority": _category(
            f"Seniority (senior: {', '.join(_words(x) for x in senior)})", seniority, "Seniority unknown", {}
        ),
        "department": _category(
            "Department",
            lambda t: f"Works in {_words(t)}",
            "Department unknown",
            {
                "other": "Works in another department",
                "executive": "Works in the executive team",
                "education": "Works in education",
            },
        ),
        "email_type": _category(
            "E-mail type", lambda t: f"E-mail type: {_words(t)}", "No e-mail domain", _EMAIL
        ),
        "size_band": _category(
            "Company size band",
            lambda t: f"Company size band {t.replace('-', '–')} employees",
            "Company size unknown",
            {},
        ),
    }


def templates_for(spec: FeatureSpec, baseline: BaselineParams | None = None) -> dict[str, Template]:
    """THE mapping feature -> Template, for every feature in ``spec.model_features``.

    Generated from the spec for the windowed count / recency / active-day families (so other windows or
    event types are covered), explicit (``_fixed_templates``) for the rest. Some sentences quote params
    (sweet spot, windows), which is why the mapping is built per spec rather than a module constant.
    """
    out: dict[str, Template] = {}
    for name, event_type, window in spec.count_features:
        out[name] = _count_template(event_type, window)
    for name, event_type in spec.recency_features:
        out[name] = _recency_template(event_type)
    for name, window in spec.active_day_features:
        out[name] = _active_days_template(window)
    out.update(_fixed_templates(spec, baseline))
    return {f: out[f] for f in spec.model_features if f in out}


class ReasonBuilder:
    """Sentences per feature value and the top positive / negative reasons per lead.

    Templates are built once at construction (model load); ``top_reasons`` selects with NumPy
    (``argpartition``) and builds strings only for the chosen k features per row.
    """

    def __init__(self, spec: FeatureSpec, baseline: BaselineParams | None = None) -> None:
        self.spec = spec
        self.features_ = list(spec.model_features)
        self.templates_ = templates_for(spec, baseline)
        missing = [f for f in self.features_ if f not in self.templates_]
        if missing:  # a new feature family in the spec without words: fail at load, not per request
            raise KeyError(f"no reason template for features: {missing}")

    def label(self, feature: str) -> str:
        """Short business name of a feature ('Pricing page visits (last 7 days)')."""
        tpl = self.templates_.get(feature)
        return tpl.label if tpl is not None else _words(feature)

    def sentence(self, feature: str, value: object) -> str:
        """The sentence for one feature value, e.g. 'Visited the pricing page 3 times in the last 7 days'."""
        return self.templates_[feature].render(value)

    def top_reasons(
        self,
        contributions: np.ndarray,
        values: Mapping[str, np.ndarray],
        k: int = 3,
        informative_missing: Mapping[str, int] | None = None,
    ) -> list[tuple[list[Reason], list[Reason]]]:
        """Per row: (top-k positive, top-k negative) reasons by |contribution|, largest first.

        A sentence never appears twice for one lead (two features can both read "Company size
        unknown"). With ``informative_missing`` (feature -> +1 / -1: leads missing it convert more / less,
        see ``informative_missing``), a missing value is a reason only for those features and only in
        that direction; without it (None) missing values are treated like any value.

        ``contributions``: LightGBM ``pred_contrib`` output (n, n_features + 1), last column the bias,
        in ``spec.model_features`` order. ``values``: feature columns (dict of arrays or a DataFrame),
        row-aligned.
        Features with a zero contribution are never reasons (the model did not use them for this lead).
        """
        contrib = np.asarray(contributions, dtype=np.float64)
        nf = len(self.features_)
        if contrib.ndim != 2 or contrib.shape[1] not in (nf, nf + 1):
            raise ValueError(f"contributions must be (n, {nf + 1}) (bias last); got {contrib.shape}")
        contrib = contrib[:, :nf]
        if informative_missing is not None:
            contrib = contrib.copy()
            for j, f in enumerate(self.features_):
                gone = missing_mask(values[f])
                if gone.any():
                    allowed = np.sign(contrib[:, j]) == informative_missing.get(f, 0)
                    contrib[gone & ~allowed, j] = 0.0  # zero contributions are never reasons
        n = contrib.shape[0]
        if n == 0:
            return []
        k = max(0, min(k, nf))
        if k == 0:
            return [([], []) for _ in range(n)]
        # (n, 2k) chosen feature indices: the k largest then the k smallest contributions per row (a
        # stable sort: ties go to the feature listed first)
        idx = np.concatenate(
            [
                np.argsort(-contrib, axis=1, kind="stable")[:, :k],
                np.argsort(contrib, axis=1, kind="stable")[:, :k],
            ],
            axis=1,
        )
        chosen = np.take_along_axis(contrib, idx, axis=1)
        sign = np.concatenate([np.ones(k), -np.ones(k)])
        keep = chosen * sign > 0  # fewer than k features may push a row one way
        names = self.features_
        renders = [self.templates_[f].render for f in names]
        idx_l, c_l, keep_l = idx.tolist(), chosen.tolist(), keep.tolist()
        # the columns a reason needs, as Python values (tolist), converted once per column used
        lists: dict[int, list[Any]] = {}

        def value(j: int, i: int) -> Any:
            col = lists.get(j)
            if col is None:
                raw = values[names[j]]
                col = lists[j] = raw.tolist() if hasattr(raw, "tolist") else list(raw)
            return col[i]

        out: list[tuple[list[Reason], list[Reason]]] = []
        for i in range(n):
            ji, ci, ki = idx_l[i], c_l[i], keep_l[i]
            both = [
                Reason(names[ji[m]], renders[ji[m]](value(ji[m], i)), ci[m]) for m in range(2 * k) if ki[m]
            ]
            cut = sum(ki[:k])
            # one sentence once: it stays where it weighs most
            seen: set[str] = set()
            kept: set[int] = set()
            for m in sorted(range(len(both)), key=lambda m: -abs(both[m].contribution)):
                if both[m].text not in seen:
                    seen.add(both[m].text)
                    kept.add(m)
            pos = [both[m] for m in range(cut) if m in kept]
            neg = [both[m] for m in range(cut, len(both)) if m in kept]
            out.append((pos, neg))
        return out
