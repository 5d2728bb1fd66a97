"""dashboard.common.memo.Memo: a result is computed once however many threads ask at the same time, a
thread asking for another key is not kept waiting, and only the newest results are kept."""

import threading
import time

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
