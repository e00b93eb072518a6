import json

from django import template

register = template.Library()


@register.filter
def get_state(states: dict, environment):
    """The flag's state in an environment (None: never set, so off)."""
    return states.get(environment.pk)


@register.filter
def mul(value: int, factor: int) -> int:
    return int(value) * int(factor)


CHART_BASE, CHART_HEIGHT, BAR_STEP, BAR_WIDTH = 58, 56, 10, 8


@register.filter
def stacked_bars(chart: dict) -> list[dict]:
    """One bar per hour, its variants stacked in the series' order (the legend's), scaled to the busiest hour: every
    variant stays visible, and the stack's height is that hour's total."""
    peak = chart.get("peak") or 0
    bars = []
    for index, (variant, counts) in enumerate(chart.get("series", {}).items()):
        for hour, count in enumerate(counts):
            if not count or not peak:
                continue
            below = sum(series[hour] for series in list(chart["series"].values())[:index])
            height = round(CHART_HEIGHT * count / peak, 1)
            y = round(CHART_BASE - CHART_HEIGHT * (below + count) / peak, 1)
            bars.append(
                {
                    "x": hour * BAR_STEP,
                    "y": y,
                    "height": height,
                    "variant": variant,
                    "index": index,
                    "n": count,
                }
            )
    return bars


@register.filter
def sum_list(values) -> int:
    return sum(values)


@register.filter
def as_json(value) -> str:
    """JSON as people and the API write it (true, not True)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@register.filter
def split_words(value: str) -> list[str]:
    return value.split()


@register.filter
def get_item(mapping: dict, key: str):
    return mapping.get(key, [])
