"""hoist_transfer: every fixture pair is rewritten exactly, idempotent and verified; noops stay."""

import pytest

import fixture_cases
from loopvec.engine import plan_source

PAIRS, NOOPS = fixture_cases.discover("hoist_transfer")


def test_catalogue_is_complete():
    assert len(PAIRS) >= 6 and len(NOOPS) >= 4


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_rewrites_and_verifies(case):
    fixture_cases.check_pair("hoist_transfer", case)


@pytest.mark.parametrize("case", NOOPS, ids=str)
def test_leaves_alone(case):
    fixture_cases.check_noop("hoist_transfer", case)


def _rewritten(source: str) -> str:
    from loopvec.engine import apply_keys

    plan = plan_source("m.py", source, ("hoist_transfer",))
    return apply_keys("m.py", source, {p.key for p in plan.planned}, ("hoist_transfer",))


def _declines(source: str) -> str:
    plan = plan_source("m.py", source, ("hoist_transfer",), show_declined=True)
    assert not plan.planned
    return " ".join(f.message for f in plan.declined)


CATALOGUE = '''import torch


def run(model, data_cpu: torch.Tensor):
    results = []
    for x in data_cpu:
        x_gpu = x.cuda()
        result = model(x_gpu)
        results.append(result.cpu())
    return results
'''


def test_the_catalogues_pitfall_moves_the_data_once():
    # .cuda() raises on a CPU-only machine, so this one is checked as text
    assert _rewritten(CATALOGUE) == CATALOGUE.replace(
        "    for x in data_cpu:\n        x_gpu = x.cuda()\n",
        "    data_gpu = data_cpu.cuda()\n    for x_gpu in data_gpu:\n")


def test_device_argument_that_is_a_call_is_not_hoisted():
    src = CATALOGUE.replace("x.cuda()", "x.to(pick_device())")
    assert "evaluated once instead of per row" in _declines(src)


def test_memory_format_depends_on_rank():
    src = CATALOGUE.replace("x.cuda()", "x.to(memory_format=torch.channels_last)")
    assert "memory_format" in _declines(src)


def test_row_read_after_the_loop_stays():
    src = CATALOGUE.replace("    return results", "    return results, x")
    assert "`x` is used after the loop" in _declines(src)


def test_transfer_inside_a_ternary_is_conditional():
    src = CATALOGUE.replace("x_gpu = x.cuda()", "x_gpu = x.cuda() if model else None")
    assert "does not run on every iteration" in _declines(src)


def test_moved_name_read_before_its_transfer_is_loop_carried():
    src = CATALOGUE.replace("        x_gpu = x.cuda()\n", "        prev = x_gpu\n        x_gpu = x.cuda()\n")
    src = src.replace("    results = []\n", "    results = []\n    x_gpu = None\n")
    assert "read before it is bound" in _declines(src)
