import pytest

from nself_jobs.errors import MalformedRequest, ValidationError
from nself_jobs.jsonio import dumps, loads_strict


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}'])
def test_nan_and_infinity_rejected(text):
    with pytest.raises(ValidationError) as caught:
        loads_strict(text)
    assert not isinstance(caught.value, MalformedRequest)
    assert "not valid JSON" in caught.value.message


def test_deep_nesting_rejected_without_recursion_error():
    with pytest.raises(ValidationError) as caught:
        loads_strict("[" * 1000 + "]" * 1000)
    assert "nested deeper" in caught.value.message


def test_brackets_inside_strings_do_not_count_as_nesting():
    assert loads_strict('{"a": "' + "[" * 500 + '"}') == {"a": "[" * 500}


def test_syntax_error_is_malformed_with_position():
    with pytest.raises(MalformedRequest) as caught:
        loads_strict('{"a": }')
    assert "line 1 column 7" in caught.value.message


def test_nul_character_rejected():
    with pytest.raises(ValidationError):
        loads_strict('{"a": "x\\u0000y"}')


def test_unicode_round_trips():
    text = '{"type":"rapport-été-中文","msg":"glāžšķūņŗūķīšī ✓"}'
    assert dumps(loads_strict(text)) == text
