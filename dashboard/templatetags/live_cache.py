"""`{% finished_once step %}…{% endfinished_once %}`: a finished rollout step's markup, rendered once per process.

A live rollout page re-renders its rollout section at every step; a finished step's row never changes again, so
its HTML is kept (by step, status and finish time) and only the rows still moving are rendered each time. The
markup is the partial's own: this only skips rendering it again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from django import template

register = template.Library()

FINISHED = frozenset({"succeeded", "failed", "skipped"})
LIMIT = 20_000  # rows kept per process (a few hundred bytes each)
_rows: OrderedDict[tuple, str] = OrderedDict()
_lock = threading.Lock()


class FinishedOnce(template.Node):
    def __init__(self, step: template.base.FilterExpression, nodelist: template.NodeList) -> None:
        self.step, self.nodelist = step, nodelist

    def render(self, context) -> str:
        step = self.step.resolve(context)
        finished_at = getattr(step, "finished_at", None)
        if finished_at is None or getattr(step, "status", None) not in FINISHED:
            return self.nodelist.render(context)
        key = (id(self), step.pk, step.status, finished_at)
        with _lock:
            html = _rows.get(key)
        if html is None:
            html = self.nodelist.render(context)
            with _lock:
                _rows[key] = html
                while len(_rows) > LIMIT:
                    _rows.popitem(last=False)
        return html


@register.tag
def finished_once(parser, token):
    bits = token.split_contents()
    if len(bits) != 2:
        raise template.TemplateSyntaxError("finished_once takes one argument: the step")
    nodelist = parser.parse(("endfinished_once",))
    parser.delete_first_token()
    return FinishedOnce(parser.compile_filter(bits[1]), nodelist)
