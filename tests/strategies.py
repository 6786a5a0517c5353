"""Hypothesis strategies shared by the provider suites (one copy, not one per provider)."""

from __future__ import annotations

import json

from hypothesis import strategies as st

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
"""Any value ``json.loads`` can produce (and the non-finite floats Python's JSON allows)."""

WEBHOOK_BODIES = st.binary(max_size=64) | JSON_VALUES.map(lambda v: json.dumps(v).encode())
"""Raw callback bodies: random bytes, or any JSON document."""
