"""A small cron schedule checker: is a CronJob schedule valid, and can it ever fire?"""

from __future__ import annotations

MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_NAMES = {
    3: {
        m: i + 1
        for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])
    },
    4: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
_DAYS_IN_MONTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}


def schedule_problem(schedule: str) -> str | None:
    """Why a schedule is unusable ('' means fine): unparsable, or a date that never occurs (e.g. Feb 30)."""
    text = schedule.strip()
    if text.startswith(("TZ=", "CRON_TZ=")):
        text = text.split(None, 1)[1] if " " in text else ""
    if text in MACROS or text.startswith("@every "):
        return None
    fields = text.split()
    if len(fields) != 5:
        return f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    sets = []
    for i, field in enumerate(fields):
        values = _field(field, i)
        if isinstance(values, str):
            return values
        sets.append(values)
    dom, months = sets[2], sets[3]
    dow_any = fields[4] in ("*", "?")
    if dow_any and fields[2] not in ("*", "?") and all(min(dom) > _DAYS_IN_MONTH[m] for m in months):
        return f"day-of-month {fields[2]} never occurs in month {fields[3]}, so the job never runs"
    return None


def _field(field: str, index: int) -> set[int] | str:
    low, high = _RANGES[index]
    out: set[int] = set()
    for part in field.split(","):
        rng, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                return f"bad step {step_text!r} in field {field!r}"
            step = int(step_text)
        if rng in ("*", "?"):
            start, end = low, high
        else:
            a, _, b = rng.partition("-")
            start_v, end_v = _value(a, index), _value(b, index) if b else None
            if start_v is None or (b and end_v is None):
                return f"bad value {rng!r} in field {field!r}"
            start = start_v
            end = end_v if end_v is not None else (high if step_text else start_v)
        if not (low <= start <= high and low <= end <= high) or start > end:
            return f"{part!r} is outside {low}-{high}"
        out.update(range(start, end + 1, step))
    return out


def _value(text: str, index: int) -> int | None:
    if text.isdigit():
        return int(text)
    return _NAMES.get(index, {}).get(text.lower())
