"""dashboard.common.memo.Memo: a result is computed once however many threads ask at the same
time, in a thread of its own that a waiting caller's interruption does not stop, every waiting
caller follows its progress, a thread asking for another key is not kept waiting, and what is kept
stays within a byte budget and is let go when idle; the dashboard's predictions follow the same
rules."""

import threading
import time
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
from thread_helpers import run_at_once

from dashboard.common import memo as memo_module
from dashboard.common import state
from dashboard.common.memo import Memo


def test_many_threads_asking_at_once_compute_once():
    memo, calls = Memo("t", budget=1000), []

    def slow(report):
        calls.append(1)
        time.sleep(0.2)
        return "result"

    results = []
    run_at_once(*[lambda: results.append(memo.get("k", slow))] * 5)
    assert results == ["result"] * 5 and len(calls) == 1 and memo.has("k")


@pytest.mark.parametrize("heavy", [False, True], ids=["another key", "a light store"])
def test_a_quick_result_does_not_wait_for_a_long_computation(heavy):
    """Another key of the same store, or a light store's result while a heavy store computes."""
    slow, started = Memo("t", budget=1000, heavy=heavy), threading.Event()
    quick = Memo("l", budget=1000) if heavy else slow

    def long(report):
        started.set()
        time.sleep(1.0)
        return 1

    worker = threading.Thread(target=slow.get, args=("slow", long))
    worker.start()
    started.wait()
    begin = time.monotonic()
    assert quick.get("quick", lambda report: 2) == 2
    assert time.monotonic() - begin < 0.5
    worker.join()


def array(kb: int) -> np.ndarray:
    return np.zeros(kb * 1024, np.uint8)


def test_what_is_kept_stays_within_the_byte_budget():
    memo = Memo("t", budget=3 * 1024)
    for key in "abc":
        memo.get(key, lambda report: array(1))
    memo.get("a", lambda report: "again")   # a is kept, and now the newest
    memo.get("d", lambda report: array(2))  # 1 + 1 + 2 KB > 3 KB: b, then c, go
    assert [memo.has(k) for k in "abcd"] == [True, False, False, True]
    assert memo.kept_bytes() == 3 * 1024
    assert memo.get("e", lambda report: array(4)).nbytes == 4096  # too big to keep: returned
    assert not memo.has("e") and memo.has("d")


def test_results_nobody_asks_for_are_let_go(monkeypatch):
    trims = []
    monkeypatch.setattr(memo_module.heap, "trim", lambda: trims.append(1))
    memo = Memo("t", budget=10 * 1024, idle_s=60)
    memo.put("old", array(2))
    memo.put("new", array(1))
    now = time.monotonic()
    memo.get("new", lambda report: None)   # asked for again: used now
    memo._memory["old"].used = now - 61    # unused for 61 s
    assert memo_module.sweep(now) >= 2048 and trims == [1]
    assert not memo.has("old") and memo.has("new")


def test_every_waiting_caller_follows_the_progress():
    memo, go, seen = Memo("t", budget=1000), threading.Event(), {}

    def compute(report):
        for done in (1, 2):
            report(done, 2)
            go.wait(5)
            time.sleep(0.3)
        return "result"

    def ask(name):
        seen[name] = []
        memo.get("k", compute, lambda done, total: seen[name].append((done, total)))

    threads = [threading.Thread(target=ask, args=(name,)) for name in ("first", "second")]
    for t in threads:
        t.start()
        time.sleep(0.2)
    go.set()
    for t in threads:
        t.join()
    for reports in seen.values():  # each change, in order, then the same again now and then
        assert list(dict.fromkeys(r for r in reports if r[1])) == [(1, 2), (2, 2)]


def test_a_caller_stopped_while_waiting_leaves_the_computation_running():
    """Streamlit stops a script at its next element (a progress bar update) when the tab reruns
    or closes: the computation goes on, and the next caller gets its result."""
    memo, calls = Memo("t", budget=1000), []

    class Stopped(Exception):
        pass

    def compute(report):
        calls.append(1)
        report(1, 2)
        time.sleep(0.5)
        return "result"

    def stop(done, total):
        raise Stopped

    with pytest.raises(Stopped):
        memo.get("k", compute, stop)
    assert memo.running("k") is not None
    assert memo.get("k", compute) == "result" and calls == [1]


def test_a_failed_computation_raises_in_every_caller_and_is_tried_again():
    memo, attempts = Memo("t", budget=1000), []

    def fails_once(report):
        attempts.append(1)
        if len(attempts) == 1:
            time.sleep(0.2)
            raise ValueError("unreadable")
        return "fixed"

    errors = []

    def ask():
        try:
            memo.get("k", fails_once)
        except ValueError as e:
            errors.append(str(e))

    run_at_once(ask, ask)
    assert errors == ["unreadable"] * 2 and len(attempts) == 1
    assert memo.get("k", fails_once) == "fixed"


def test_two_keys_are_computed_at_the_same_time():
    memo, both_running = Memo("t", budget=1000), threading.Barrier(2, timeout=5)

    def waits_for_the_other(key):
        both_running.wait()  # broken (an error) unless the other key is being computed too
        return key

    results = {}
    run_at_once(*(lambda k=k: results.update({k: memo.get(
        k, lambda report: waits_for_the_other(k))}) for k in "ab"))
    assert results == {"a": "a", "b": "b"} and not both_running.broken


def test_put_peek_and_clear():
    memo = Memo("t", budget=2048)
    memo.put("a", array(1))
    memo.put("b", array(1))
    memo.put("a", "three")  # a again: replaced, and now the newest
    memo.put("c", array(2))  # b goes (a holds no array)
    assert memo.peek("a") == "three" and memo.peek("b") is None and memo.peek("c") is not None
    assert memo.get("a", lambda report: "computed") == "three"
    memo.clear()
    assert not memo.has("a") and memo.peek("c") is None


CKPT = SimpleNamespace(path="/no/such/best.pt", model=None)
DATA = SimpleNamespace(fingerprint="abc")


@pytest.fixture
def predicted(monkeypatch):
    """The dashboard's predictions (a heavy store, as the dashboard's) with a stand-in for the
    model that records when each split's prediction starts and ends."""
    record = SimpleNamespace(spans={})
    monkeypatch.setattr(state, "PREDICTIONS", Memo("t", budget=1000, heavy=True))
    monkeypatch.setattr(state, "device", lambda: "cpu")

    def predict(model, path, dataset, split, device, progress=None):
        start = time.monotonic()
        time.sleep(0.3)
        record.spans[split] = (start, time.monotonic())
        return f"predictions of {split}"

    monkeypatch.setattr(state, "cached_predict_split", predict)
    return record


def _ask_at_once(*splits: str) -> list[str | None]:
    """state.predictions of each split, each asked by its own thread at the same time."""
    results = [None] * len(splits)

    def ask(i: int, split: str) -> None:
        results[i] = state.predictions(CKPT, DATA, split)

    run_at_once(*(partial(ask, i, split) for i, split in enumerate(splits)))
    return results


def test_two_splits_asked_at_once_are_predicted_in_turn(predicted):
    """Two heavy computations side by side would share the cores and both finish late."""
    assert _ask_at_once("val", "test") == ["predictions of val", "predictions of test"]
    (a_start, a_end), (b_start, b_end) = sorted(predicted.spans.values())
    assert a_end <= b_start


def test_a_kept_split_answers_while_another_is_predicted(predicted):
    state.predictions(CKPT, DATA, "val")
    other = threading.Thread(target=state.predictions, args=(CKPT, DATA, "train"))
    other.start()
    time.sleep(0.05)
    begin = time.monotonic()
    assert state.predictions(CKPT, DATA, "val") == "predictions of val"
    assert time.monotonic() - begin < 0.1 and other.is_alive()
    other.join()


def test_two_tabs_asking_for_one_split_predict_it_once(predicted):
    assert not state.predictions_ready(CKPT, DATA, "val")
    assert _ask_at_once("val", "val") == ["predictions of val"] * 2
    assert list(predicted.spans) == ["val"] and state.predictions_ready(CKPT, DATA, "val")


def test_a_queued_computation_nobody_waits_for_is_dropped(monkeypatch):
    monkeypatch.setattr(memo_module, "ABANDONED_S", 0.1)
    memo, release, calls = Memo("h", 1000, heavy=True), threading.Event(), []

    def blocking(report):
        release.wait(5)
        return "first"

    def counted(report):
        calls.append(1)
        report(1, 1)
        return "second"

    class Left(Exception):
        pass

    def leave(done, total):
        raise Left

    first = threading.Thread(target=memo.get, args=("a", blocking))
    first.start()
    while memo.running("a") is None or memo_module.HEAVY.free:  # "a" holds the turn
        time.sleep(0.01)
    queued = threading.Thread(target=lambda: pytest.raises(Left, memo.get, "b", counted, leave))
    queued.start()                                 # asks for "b", then its tab goes...
    queued.join(timeout=1)
    while memo.running("b") is not None and memo.running("b")._waiting:
        time.sleep(0.01)
    time.sleep(0.2)                                # ...for longer than ABANDONED_S
    release.set()
    first.join()
    while memo.running("b") is not None:
        time.sleep(0.01)
    assert calls == [] and not memo.has("b")
    assert memo.get("b", counted) == "second" and calls == [1]  # asked again: computed


def test_turns_are_served_in_order_of_arrival_and_passed_on_between_steps():
    turns, order, holding = memo_module.Turns(1), [], threading.Event()

    def long_job():
        with turns.turn():
            holding.set()
            for step in range(3):
                time.sleep(0.15)
                order.append(f"step {step}")
                turns.pass_on()

    def asks(name):
        with turns.turn():
            order.append(name)

    threads = [threading.Thread(target=long_job)]
    threads[0].start()
    holding.wait()
    for name in ("first", "second"):
        threads.append(threading.Thread(target=asks, args=(name,)))
        threads[-1].start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert order == ["step 0", "first", "second", "step 1", "step 2"]
    assert turns.free == 1
