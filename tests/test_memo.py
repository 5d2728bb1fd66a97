"""dashboard.common.memo.Memo: a result is computed once however many threads ask at the same
time, a thread asking for another key is not kept waiting, and only the newest results are kept;
the dashboard's predictions follow the same rules."""

import threading
import time
from types import SimpleNamespace

import pytest

from dashboard.common import state
from dashboard.common.memo import Memo


def test_many_threads_asking_at_once_compute_once():
    memo, calls = Memo(kept=4), []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return "result"

    results = []
    threads = [threading.Thread(target=lambda: results.append(memo.get("k", slow)))
               for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["result"] * 5 and len(calls) == 1 and memo.has("k")


def test_another_key_does_not_wait_for_a_long_computation():
    memo, started = Memo(kept=4), threading.Event()

    def long():
        started.set()
        time.sleep(1.0)
        return 1

    worker = threading.Thread(target=memo.get, args=("slow", long))
    worker.start()
    started.wait()
    begin = time.monotonic()
    assert memo.get("quick", lambda: 2) == 2
    assert time.monotonic() - begin < 0.5
    worker.join()


def test_only_the_newest_results_are_kept():
    memo = Memo(kept=2)
    for key in "abc":
        memo.get(key, lambda key=key: key)
    memo.get("b", lambda: "again")  # b is kept, and now the newest
    memo.get("d", lambda: "d")
    assert [memo.has(k) for k in "abcd"] == [False, True, False, True]


def test_two_keys_are_computed_at_the_same_time():
    memo, both_running = Memo(kept=4), threading.Barrier(2, timeout=5)

    def waits_for_the_other(key):
        both_running.wait()  # broken (an error) unless the other key is being computed too
        return key

    results = {}
    threads = [threading.Thread(target=lambda k=k: results.update({k: memo.get(
        k, lambda: waits_for_the_other(k))})) for k in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"a": "a", "b": "b"} and not both_running.broken


def test_put_peek_and_clear():
    memo = Memo(kept=2)
    memo.put("a", 1)
    memo.put("b", 2)
    memo.put("a", 3)  # a again: replaced, and now the newest
    memo.put("c", 4)
    assert [memo.peek(k) for k in "abcd"] == [3, None, 4, None]
    assert memo.get("a", lambda: "computed") == 3
    memo.clear()
    assert not memo.has("a") and memo.peek("c") is None


CKPT = SimpleNamespace(path="/no/such/best.pt", model=None)
DATA = SimpleNamespace(fingerprint="abc")


@pytest.fixture
def predicted(monkeypatch):
    """The dashboard's predictions with a stand-in for the model that records each split it
    predicts, and waits until `together` predictions have started (failing after 5 s)."""
    record = SimpleNamespace(splits=[], together=1)
    started = threading.Condition()
    monkeypatch.setattr(state, "PREDICTIONS", Memo(kept=8))
    monkeypatch.setattr(state, "device", lambda: "cpu")

    def predict(model, path, dataset, split, device, progress=None):
        with started:
            record.splits.append(split)
            started.notify_all()
            assert started.wait_for(lambda: len(record.splits) >= record.together, timeout=5)
        time.sleep(0.2)
        return f"predictions of {split}"

    monkeypatch.setattr(state, "cached_predict_split", predict)
    return record


def _ask_at_once(*splits: str) -> list[str | None]:
    """state.predictions of each split, each asked by its own thread at the same time."""
    results = [None] * len(splits)

    def ask(i: int, split: str) -> None:
        results[i] = state.predictions(CKPT, DATA, split)

    threads = [threading.Thread(target=ask, args=item) for item in enumerate(splits)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_tabs_predict_two_splits_at_the_same_time(predicted):
    predicted.together = 2
    assert _ask_at_once("val", "test") == ["predictions of val", "predictions of test"]
    assert sorted(predicted.splits) == ["test", "val"]


def test_two_tabs_asking_for_one_split_predict_it_once(predicted):
    assert not state.predictions_ready(CKPT, DATA, "val")
    assert _ask_at_once("val", "val") == ["predictions of val"] * 2
    assert predicted.splits == ["val"] and state.predictions_ready(CKPT, DATA, "val")
