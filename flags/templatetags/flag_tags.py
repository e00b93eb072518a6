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


@register.filter
def bar_h(count: int, peak: int) -> float:
    return round(56 * count / peak, 1) if peak else 0


@register.filter
def bar_y(count: int, peak: int) -> float:
    return round(58 - bar_h(count, peak), 1)


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
