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
    # Every phase's requests pass here (a `map_headers` hook sees only generated headers, not
    # those of the coverage phase's cases).
    headers = case.headers
    if not headers:
        return
    for name in list(headers):
        value = headers[name]
        if name.lower() == "idempotency-key" and isinstance(value, str) and VALID_KEY.fullmatch(value):
            headers[name] = f"{value[:200]}-{uuid.uuid4().hex}"
