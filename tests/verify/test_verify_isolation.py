"""User code that hangs, exits or crashes fails its own candidate; the batch goes on."""

import pytest

from loopvec.verify import VerifySettings, verify_candidates

PLAIN = "def plain(x):\n    return x + 1\n"


@pytest.fixture(scope="module")
def verdicts(rewrite, batch):
    # Good candidates among the bad ones: each gets its own verdict, from a worker
    # restarted after every crash.
    cands = [
        rewrite("crashers.py", "sleeps", "def sleeps(x):\n    return x\n", key="sleeps forever"),
        rewrite("crashers.py", "plain", PLAIN, key="after the hang"),
        rewrite("crashers.py", "exits_hard", "def exits_hard(x):\n    return x\n", key="os._exit"),
        rewrite("crashers.py", "plain", PLAIN, key="after os._exit"),
        rewrite("crashers.py", "calls_exit", "def calls_exit(x):\n    return x\n", key="sys.exit"),
        rewrite("crashers.py", "plain", "def plain(x):\n    import ctypes\n    ctypes.string_at(0)\n", key="segfault"),
        rewrite("broken_import.py", "f", "def f(x):\n    return x\n", key="import error"),
        rewrite("crashers.py", "plain", "def plain(x):\n    big = torch.ones(2**30)\n    return x + 1\n", key="memory hog"),
        rewrite("crashers.py", "plain", "def plain(x):\n    print('noise')\n    return x + 1\n", key="prints"),
        rewrite("crashers.py", "plain", PLAIN, key="last"),
    ]
    settings = VerifySettings(max_examples=20, timeout_s=6.0, memory_mb=600, workers=2)
    return batch("isolation", cands, settings)


def test_a_function_that_sleeps_forever_times_out(verdicts):
    v = verdicts["sleeps forever"]
    assert v.status == "failed" and v.message.startswith("timed out")


def test_os_exit_crashes_only_its_worker(verdicts):
    v = verdicts["os._exit"]
    assert v.status == "failed" and v.message.startswith("worker crashed: exit code 3")


def test_sys_exit_is_reported_as_a_crash(verdicts):
    v = verdicts["sys.exit"]
    assert v.status == "failed" and v.message == "worker crashed: user code called sys.exit(2) in the original"


def test_a_segfault_is_reported_with_its_signal(verdicts):
    v = verdicts["segfault"]
    assert v.status == "failed" and "SIGSEGV" in v.message


def test_a_module_that_raises_on_import_is_unverifiable(verdicts):
    v = verdicts["import error"]
    assert v.status == "unverifiable"
    assert v.message == "module failed to import: RuntimeError: this module refuses to be imported"


def test_a_memory_hog_is_stopped(verdicts):
    v = verdicts["memory hog"]
    assert v.status == "failed" and "memory limit exceeded" in v.message


@pytest.mark.parametrize("key", ["after the hang", "after os._exit", "prints", "last"])
def test_the_batch_goes_on_after_a_crash(verdicts, key):
    assert verdicts[key].status == "verified", verdicts[key].message


def test_verdicts_come_back_in_order_with_their_keys(rewrite):
    cands = [rewrite("crashers.py", "plain", PLAIN, key=f"k{i}") for i in range(3)]
    verdicts = verify_candidates(cands, VerifySettings(max_examples=10, workers=2))
    assert [v.key for v in verdicts] == ["k0", "k1", "k2"]
    assert all(v.ok for v in verdicts)


def test_an_empty_batch_starts_nothing():
    assert verify_candidates([], VerifySettings()) == []
