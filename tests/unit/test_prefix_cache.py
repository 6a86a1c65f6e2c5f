"""The KV cache of a forward's output is read under transformers' new name, so no deprecation warning."""

from __future__ import annotations

import pytest
from transformers.modeling_outputs import CausalLMOutputWithPast

from forgetless.engine.prefix_cache import returned_cache


class OldNameRaises(CausalLMOutputWithPast):
    @property
    def past_key_values(self):
        raise AssertionError("the deprecated name was read")


def test_the_cache_is_read_under_its_new_name_where_transformers_has_it():
    if "cache" not in CausalLMOutputWithPast.__dataclass_fields__:
        pytest.skip("this transformers still calls it past_key_values")
    cache = object()
    assert returned_cache(OldNameRaises(cache=cache)) is cache


def test_the_old_name_where_transformers_has_only_it():
    class Old(dict):
        past_key_values = "kv"

    assert returned_cache(Old()) == "kv"
