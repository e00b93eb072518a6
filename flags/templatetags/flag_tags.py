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
