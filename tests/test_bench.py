"""The speed gate and `loopvec bench`: what is measured, how a result is judged, and how it shows.

No assertion here depends on how fast anything ran; speed targets live in `benchmarks/`.
"""

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from loopvec import bench as B
from loopvec.bench import BenchRequest, Timing, bench, speed_note
from loopvec.cli import app
from loopvec.runner import RunOptions, apply
from loopvec.verify.plan import Dim, ListArg, Plan, ScalarArg, TensorArg
from loopvec.verify.types import Impl

LOOPS = '''import torch


def double(x: torch.Tensor) -> torch.Tensor:
    out = []
    for v in x:
        out.append(v * 2)
    return torch.stack(out)


def hang(x: torch.Tensor) -> torch.Tensor:
    while True:
        pass


def guarded(x: torch.Tensor) -> torch.Tensor:
    if x.numel() > 10**9:
        out = []
        for v in x:
            out.append(v * 2)
        return torch.stack(out)
    return x * 2


def first_above(x: torch.Tensor) -> torch.Tensor:
    for i in range(len(x)):
        if x[i] > -100.0:
            return x[i]
    return x[0]


def weigh(x, w):  # loopvec: shapes x=[n,4] w=[n]
    out = []
    for i in range(len(x)):
        out.append(x[i].sum() * w[i])
    return torch.stack(out)
'''


@pytest.fixture
def module(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "loops.py"
    path.write_text(LOOPS)
    return path


# --------------------------------------------------------------------------- judging and showing


def timed(median: float, low: float, high: float, **more) -> Timing:
    return Timing("k", "measured", original_s=1.0, rewrite_s=1.0 / median, speedup_median=median,
                  speedup_low=low, speedup_high=high, **more)


@pytest.mark.parametrize("timing, gate, kept", [
    (timed(2.0, 1.8, 2.2), 1.1, True),
    (timed(1.02, 0.95, 1.1), 1.1, False),
    (timed(1.02, 0.95, 1.1), 1.0, False),
    (timed(1.3, 0.98, 1.6), 1.1, False),
    (timed(1.05, 1.02, 1.08), 1.1, False),
    (timed(1.05, 1.02, 1.08), 1.0, True),
    (timed(0.5, 0.45, 0.55), 1.1, False),
    (timed(3.0, 2.8, 3.2), 5.0, False),
    (timed(0.9, 0.85, 0.95), 0.8, True),
    (Timing("k", "measured", original_s=2.0, rewrite_s=1.0), 1.1, True),
    (Timing("k", "not-measured", "cannot build a scaled-up ModuleArg argument"), 1.1, True),
    (Timing("k", "unreached", "the loop did not run on the scaled-up inputs (x=[65536])"), 1.1, False),
    (Timing("k", "failed", "the rewrite raised where the loop did not"), 1.1, False),
], ids=["measurably twice as fast", "a tie goes", "a tie goes even at a gate of 1", "a spread that reaches 1 goes",
        "measurably faster but under 1.1x goes", "measurably faster stays at a gate of 1", "twice as slow goes",
        "under the asked speedup goes", "a gate under 1 keeps a bounded slowdown",
        "a ratio without a spread is judged by itself", "unmeasured stays", "a loop that never ran goes",
        "a rewrite that raises goes"])
def test_what_the_gate_keeps(timing, gate, kept):
    assert timing.passes(gate) is kept


@pytest.mark.parametrize("timing, gate, why", [
    (timed(1.04, 0.93, 1.12, sizes=(("n", 64),)), 1.1, "not measurably faster: 1.04x (0.93-1.12x, n=64)"),
    (timed(0.4, 0.38, 0.42, sizes=(("n", 64),)), 1.1, "2.5x slower (0.38-0.42x, n=64)"),
    (timed(1.5, 1.3, 1.7), 5.0, "only 1.5x faster (1.30-1.70x)"),
    (timed(0.7, 0.6, 0.79), 0.8, "1.4x slower (0.60-0.79x)"),
    (timed(0.9, 0.79, 0.95), 0.8, "not measurably over 0.8x: 0.90x (0.79-0.95x)"),
    (Timing("k", "unreached", "the loop did not run on the scaled-up inputs (x=[64])"), 1.1,
     "the loop did not run on the scaled-up inputs (x=[64])"),
], ids=["a tie", "slower", "under the asked speedup", "slower than a gate under 1",
        "not measurably over a gate under 1", "a loop that never ran"])
def test_a_dropped_rewrite_says_why(timing, gate, why):
    assert not timing.passes(gate)
    assert why in B.gate_note(timing, gate)


@pytest.mark.parametrize("median, note", [(1.02, "1.02x faster"), (0.98, "1.02x slower"), (1.1, "1.1x faster"),
                                          (37.24, "37.2x faster")],
                         ids=["just faster", "just slower", "the default gate", "far faster"])
def test_a_ratio_near_one_never_reads_as_a_tie(median, note):
    assert speed_note(timed(median, median, median)) == note


@pytest.mark.parametrize("loop_s, rewrite_s, rounds", [(0.02, 0.0, 3), (0.002, 0.002, 6)],
                         ids=["a clear-cut win stops at three rounds", "a tie takes the six rounds"])
def test_paired_rounds_past_the_budget(loop_s, rewrite_s, rounds):
    import time

    orig, new = B._time_both(lambda: time.sleep(loop_s), lambda: time.sleep(rewrite_s), ((), {}), "cpu",
                             first=1.0, budget_s=0.0)
    assert len(orig) == len(new) == rounds


@pytest.mark.parametrize("n, ranks", [(3, (1, 3)), (6, (1, 6)), (10, (2, 9)), (25, (8, 18))],
                         ids=["too few for any rank: the range", "six: the range", "ten", "twenty-five"])
def test_the_interval_of_the_median_comes_from_ranks(n, ranks):
    ratios = [float(k) for k in range(n, 0, -1)]  # n..1, unsorted
    assert B.median_interval(ratios) == tuple(float(r) for r in ranks)


def test_speed_notes_say_faster_or_slower_with_the_sizes():
    fast = Timing("k", "measured", original_s=0.372, rewrite_s=0.01, sizes=(("n", 100000), ("3", 3)))
    slow = Timing("k", "measured", original_s=0.01, rewrite_s=0.025, sizes=(("n", 64),))
    assert speed_note(fast) == "37.2x faster (n=100000)"
    assert speed_note(slow) == "2.5x slower (n=64)"
    assert speed_note(Timing("k", "not-measured", "no inputs")) == "speed not measured: no inputs"


# --------------------------------------------------------------------------- inputs and memory, in process


def test_scaled_inputs_follow_the_plan():
    import inspect

    plan = Plan(args=(("x", TensorArg(("n", "3"))), ("idx", TensorArg(("m",), ("int64",), index_of="n")),
                      ("k", ScalarArg("int", upto="n")), ("rows", ListArg("m", ScalarArg("float")))),
                dims=(Dim("n", 0, 8), Dim("3", 3, 3), Dim("m", 1, 8)))

    def f(x, idx, k, rows):
        pass

    (args, kwargs), shapes = B._inputs(plan, {"n": 50, "3": 3, "m": 7}, "cpu", inspect.signature(f))
    x, idx, k, rows = args
    assert x.shape == (50, 3) and x.dtype == torch.float32
    assert idx.shape == (7,) and idx.dtype == torch.int64 and int(idx.max()) < 50
    assert k == 50 and rows == [0.5] * 7
    assert shapes == "x=[50,3] idx=[7] k=50 rows=<7 items>"


def test_peak_memory_counts_tensors_alive_at_once():
    x = torch.zeros(1000)  # 4000 bytes; an input, so not counted

    def two_temporaries(x):
        y = x * 2  # 4000
        z = y + 1  # 8000 alive
        del y
        return z * 3  # 8000 again

    def loop(x):
        out = []
        for v in x[:10]:
            out.append(v * 2)  # ten 4-byte scalars
        return torch.stack(out)  # and 40 bytes more

    assert B._peak_bytes(two_temporaries, ((x,), {}), "cpu") == 8000
    assert B._peak_bytes(loop, ((x,), {}), "cpu") == 80


# --------------------------------------------------------------------------- end to end (a worker process)


@pytest.mark.slow
def test_a_rewrite_is_measured_against_its_loop(module):
    rewrite = "def double(x):\n    return x * 2\n"
    req = BenchRequest("k", Impl(str(module), "double"), Impl(str(module), "double", rewrite), budget_s=0.2,
                       max_loop_s=0.02)
    broken = BenchRequest("b", Impl(str(module), "double"),
                          Impl(str(module), "double", "def double(x):\n    return x.nope()\n"), budget_s=0.2,
                          max_loop_s=0.02)
    missing = BenchRequest("m", Impl(str(module), "absent"), Impl(str(module), "absent"))
    sized = BenchRequest("s", Impl(str(module), "double"), Impl(str(module), "double", rewrite),
                         sizes=(("*", 123),), budget_s=0.1)
    measured, failed, unknown, fixed = bench([req, broken, missing, sized], timeout_s=60)
    assert measured.status == "measured" and measured.speedup is not None and measured.calls >= 3
    assert measured.original_bytes is not None and measured.shapes.startswith("x=[")
    assert failed.status == "failed" and "AttributeError" in failed.message
    assert unknown.status == "not-measured" and "absent" in unknown.message
    assert fixed.shapes == "x=[123]"


def _loop_at(text: str, qualname: str, loop: str) -> tuple[int, int]:
    """(line, 1-based column) of the loop line `loop` inside def `qualname`."""
    lines = text.splitlines()
    start = lines.index(next(ln for ln in lines if ln.startswith(f"def {qualname}(")))
    k = next(k for k in range(start, len(lines)) if lines[k].strip() == loop)
    return k + 1, len(lines[k]) - len(lines[k].lstrip()) + 1


@pytest.mark.slow
def test_a_loop_that_runs_on_no_input_is_not_timed(module):
    rewrite = "def guarded(x):\n    if x.numel() > 10**9:\n        return x * 2\n    return x * 2\n"
    req = BenchRequest("g", Impl(str(module), "guarded", loop=_loop_at(LOOPS, "guarded", "for v in x:")),
                       Impl(str(module), "guarded", rewrite, span=(3,)), budget_s=0.1, max_loop_s=0.02)
    (timing,) = bench([req], timeout_s=60)
    assert timing.status == "unreached" and timing.speedup is None and not timing.passes(1.1)
    assert timing.message.startswith("the loop did not run on the scaled-up inputs (x=[")


@pytest.mark.slow
def test_the_timed_inputs_are_ones_the_loop_ran_on(module):
    rewrite = "def double(x):\n    return x * 2\n"
    req = BenchRequest("k", Impl(str(module), "double", loop=_loop_at(LOOPS, "double", "for v in x:")),
                       Impl(str(module), "double", rewrite, span=(2,)), sizes=(("*", 300),), budget_s=0.1)
    (timing,) = bench([req], timeout_s=60)
    assert timing.status == "measured" and timing.iterations == 300
    assert timing.speedup_low <= timing.speedup <= timing.speedup_high and timing.calls >= B.CLEAR_ROUNDS


@pytest.mark.slow
def test_a_search_loop_that_returns_on_its_first_item_has_run(module):
    rewrite = "def first_above(x):\n    return x[(x > -100.0).nonzero()[0, 0]]\n"
    loop = _loop_at(LOOPS, "first_above", "for i in range(len(x)):")
    req = BenchRequest("s", Impl(str(module), "first_above", loop=loop),
                       Impl(str(module), "first_above", rewrite, span=(2,)), sizes=(("*", 300),), budget_s=0.05)
    (timing,) = bench([req], timeout_s=60)
    assert timing.status == "measured" and timing.iterations == 1


@pytest.mark.slow
def test_apply_leaves_a_rewrite_whose_loop_the_gate_could_not_run(module, monkeypatch):
    import loopvec.runner as R

    def unreached(requests, timeout_s, memory_mb=4096):
        return [Timing(r.key, "unreached", "the loop did not run on the scaled-up inputs (x=[8])") for r in requests]

    monkeypatch.setattr(R, "bench", unreached)
    result = apply(RunOptions(paths=("loops.py",), min_speedup=1.1))
    (finding,) = [f for f in result.findings if f.function == "double"]
    assert finding.status == "verified" and finding.speedup is None
    assert finding.message == ("verified, but speed not measured: the loop did not run on the scaled-up inputs "
                               "(x=[8]): left as it was")
    assert module.read_text() == LOOPS


@pytest.mark.slow
def test_bench_shape_overrides_the_shapes_comment(module):
    result = CliRunner().invoke(app, ["bench", "loops.py::weigh", "--shape", "x=[300,4]", "--timeout", "120"])
    assert result.exit_code == 0, result.output
    assert "x=[300,4] w=[300] on cpu, the loop ran 300 iterations per call" in result.output


@pytest.mark.slow
def test_a_hanging_function_times_out_and_the_next_one_still_runs(module):
    hang = BenchRequest("h", Impl(str(module), "hang"), Impl(str(module), "hang", "def hang(x):\n    return x\n"))
    ok = BenchRequest("k", Impl(str(module), "double"), Impl(str(module), "double", "def double(x):\n    return x * 2\n"),
                      sizes=(("*", 10),), budget_s=0.01, memory=False)
    hung, after = bench([hang, ok], timeout_s=5)
    assert hung.status == "not-measured" and "timed out" in hung.message
    assert after.status == "measured"


@pytest.mark.slow
def test_each_request_is_timed_with_the_modules_of_its_own_folder(tmp_path):
    # a/ and b/ each have a utils.helper; b's takes a scale: timed with a's, b's loop
    # would raise on every input and never be measured
    calls = {"a": "helper(v)", "b": "helper(v, 3)"}
    helpers = {"a": "def helper(v):\n    return v * 2\n", "b": "def helper(v, scale):\n    return v * scale\n"}
    requests = []
    for name in "ab":
        (tmp_path / name).mkdir()
        (tmp_path / name / "utils.py").write_text(helpers[name])
        path = tmp_path / name / "mod.py"
        path.write_text(f"import torch\nfrom utils import helper\n\n\ndef f(x: torch.Tensor) -> torch.Tensor:\n"
                        f"    out = []\n    for v in x:\n        out.append({calls[name]})\n    return torch.stack(out)\n")
        rewrite = f"def f(x):\n    return {calls[name].replace('v', 'x')}\n"
        requests.append(BenchRequest(name, Impl(str(path), "f"), Impl(str(path), "f", rewrite), sizes=(("*", 10),),
                                     budget_s=0.01, memory=False))
    a, b = bench(requests, timeout_s=60)
    assert a.status == "measured", a.message
    assert b.status == "measured", b.message


@pytest.mark.slow
def test_apply_shows_the_speedup_in_the_diff_header_and_the_finding(module):
    result = apply(RunOptions(paths=("loops.py",), dry_run=True, min_speedup=B.DEFAULT_MIN_SPEEDUP))
    (finding,) = [f for f in result.findings if f.function == "double"]
    assert result.diffs[0].startswith("# loopvec: elementwise ")  # kept: so it reads "faster", never "slower"
    assert finding.status == "verified" and "x faster (n=" in finding.message and "slower" not in finding.message
    data = finding.to_json()
    assert data["speedup_low"] <= data["speedup"] <= data["speedup_high"] and data["speedup_low"] > 1


@pytest.mark.slow
def test_the_gate_leaves_a_rewrite_that_is_not_fast_enough(module):
    result = apply(RunOptions(paths=("loops.py",), min_speedup=1e12))
    (finding,) = [f for f in result.findings if f.function == "double"]
    assert finding.status == "verified" and "left as it was (--min-speedup 1e+12)" in finding.message
    assert module.read_text() == LOOPS


@pytest.mark.slow
def test_bench_command_reports_speedup_and_memory(module):
    result = CliRunner().invoke(app, ["bench", "loops.py::double", "--shape", "x=[2000]", "--timeout", "120"])
    assert result.exit_code == 0, result.output
    assert "x=[2000]" in result.output and "speedup:" in result.output and "peak" in result.output


def test_bench_command_says_when_there_is_nothing_to_compare(module):
    result = CliRunner().invoke(app, ["bench", "loops.py::hang"])
    assert result.exit_code == 2
    assert "no loop in hang that loopvec rewrites" in result.output


def test_bench_command_rejects_a_bad_size(module):
    result = CliRunner().invoke(app, ["bench", "loops.py::double", "--size", "n=lots"])
    assert result.exit_code == 2 and "not an integer" in result.output


# --------------------------------------------------------------------------- the memory gate


def test_max_memory_reads_sizes_off_and_a_default():
    from loopvec.memory import default_limit, max_memory_option

    assert max_memory_option("4GiB") == 4 * 2 ** 30 and max_memory_option("512 MB") == 512 * 10 ** 6
    assert max_memory_option(10_000) == 10_000
    assert max_memory_option("off") is None and max_memory_option(0) is None
    assert max_memory_option(None) == default_limit() and default_limit() > 2 ** 20
    with pytest.raises(ValueError, match="cannot read size"):
        max_memory_option("lots")


def test_the_report_says_when_a_rewrite_needs_much_more_memory_than_its_loop():
    grows = Timing("k", "measured", original_bytes=4 << 10, rewrite_bytes=64 << 20, sizes=(("n", 4096),))
    same = Timing("k", "measured", original_bytes=40 << 20, rewrite_bytes=64 << 20)
    small = Timing("k", "measured", original_bytes=8, rewrite_bytes=4096)  # 512x, but 4 KiB
    assert grows.grows_memory() and not same.grows_memory() and not small.grows_memory()
    assert B.memory_note(grows) == "peak memory ~64.0 MiB where the loop's was ~4.0 KiB (n=4096)"


@pytest.mark.slow
def test_a_rewrite_over_max_memory_is_left_as_it_was(module):
    result = apply(RunOptions(paths=("loops.py",), max_memory=1))
    (finding,) = [f for f in result.findings if f.function == "double"]
    assert finding.status == "verified" and "over --max-memory 1 B: left as it was" in finding.message
    assert "peak memory ~" in finding.message and finding.peak_bytes > 1
    assert module.read_text() == LOOPS


def test_max_memory_on_the_command_line_must_be_a_size(module):
    result = CliRunner().invoke(app, ["apply", "loops.py", "--max-memory", "lots"])
    assert result.exit_code == 2 and "--max-memory" in result.output and "cannot read size" in result.output


def test_integer_inputs_can_be_drawn_nonnegative_for_loops_that_index_with_them():
    import inspect

    plan = Plan(args=(("segment", TensorArg(("n",), ("int64",))),), dims=(Dim("n", 0, 8),))

    def f(segment):
        pass

    (signed,), _ = B._inputs(plan, {"n": 1000}, "cpu", inspect.signature(f))[0]
    (unsigned,), _ = B._inputs(plan, {"n": 1000}, "cpu", inspect.signature(f), nonnegative=True)[0]
    assert int(signed.min()) < 0 <= int(unsigned.min()) and int(unsigned.max()) <= 100


# --------------------------------------------------------------------------- nothing left in the user's folder


@pytest.mark.slow
def test_a_dry_run_leaves_no_hypothesis_folder_in_the_working_directory(module, monkeypatch):
    # hypothesis keeps what it reads off local modules under ./.hypothesis unless told otherwise
    monkeypatch.delenv("HYPOTHESIS_STORAGE_DIRECTORY", raising=False)
    result = CliRunner().invoke(app, ["apply", "--dry-run", "--no-cache", "loops.py"])
    assert result.exit_code == 1, result.output
    assert "return x * 2" in result.output  # the verifier ran: it proved the rewrite
    assert sorted(p.name for p in module.parent.iterdir()) == ["loops.py"]
