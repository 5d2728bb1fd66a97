"""Progress bars that follow a computation of `memo.Memo` (or any (done, total) reports)."""

from collections.abc import Callable

WAITING = "Waiting for its turn: another long computation is running..."


def on_bar(bar, describe: Callable[[int, int], str]) -> Callable[[int, int], None]:
    """A (done, total) callback drawing on `bar` (an st.progress element) with the text
    `describe(done, total)`; a total of 0 is a computation not under way yet (see
    `memo.Job.wait`), said as such."""
    def show(done: int, total: int) -> None:
        if total == 0:
            bar.progress(0.0, text=WAITING)
        else:
            bar.progress(min(done / total, 1.0), text=describe(done, total))
    return show
