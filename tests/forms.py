"""Reading a page's form that refused what was typed."""

import re


def error_beside(html: str, field: str, error_id: str) -> str:
    """The error is shown inside the field's form (a live push leaves a form showing errors alone), and each input
    or textarea of the field there is marked invalid and described by it: returns the error's text."""
    error = re.search(rf'<p class="field-error" id="{re.escape(error_id)}">(.*?)</p>', html, re.S)
    assert error, f"no error {error_id}"
    start = html.rindex("<form", 0, error.start())
    assert "</form>" not in html[start : error.start()], f"{error_id} is outside its form"
    form = html[start : html.index("</form>", error.end())]
    tags = re.findall(rf'<(?:input|textarea)[^>]*name="{field}"[^>]*>', form)
    assert tags, f"no field {field} in the form of {error_id}"
    for tag in tags:
        assert 'aria-invalid="true"' in tag and f'aria-describedby="{error_id}"' in tag, tag
    return error.group(1)
