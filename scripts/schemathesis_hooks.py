"""Schemathesis hooks for scripts/fuzz-api.sh (loaded through SCHEMATHESIS_HOOKS).

A generated Idempotency-Key is drawn from a small space ("0", "!", ...), so most POSTs would
reuse a key of an earlier request with another body and be answered 422 by the idempotency
layer, never reaching the command behind it. A key of valid form is made unique here; one of
invalid form is left as drawn, so its refusal is still tested.
"""

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"[!-~]{1,255}")


@schemathesis.hook
def before_call(context, case, **kwargs):
    # Every request passes here, whichever phase made it. A `map_headers` hook missed some:
    # 149 of 1,303 requests in one run were still refused as a key reused for another body.
    headers = case.headers
    if not headers:
        return
    for name in list(headers):
        value = headers[name]
        if name.lower() == "idempotency-key" and isinstance(value, str) and VALID_KEY.fullmatch(value):
            headers[name] = f"{value[:200]}-{uuid.uuid4().hex}"
