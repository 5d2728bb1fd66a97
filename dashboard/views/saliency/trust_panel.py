"""The Saliency page's trust checks: a flag per method that fails any check (the sanity
check, deletion, localization on the built-in faces, each against its baseline), and the "Can I
trust this map?" section (this map's deletion curve against a random order, every check of every
method against its baseline, a table comparing the methods, every method's randomization
curve).

The report covers the first N faces of a split (N adjustable) and is computed once per
checkpoint in a background thread (`trust_jobs`), then read from the disk cache.
"""

import numpy as np
import pandas as pd
import streamlit as st

from dashboard.common.keys import memo_key
from dashboard.common.tables import content_height
from dashboard.views.saliency import trust_charts, trust_jobs
from fer_core.explain.attribution import output_classes
from fer_core.explain.trust import FAILURES, FLAG_AT, face_deletion

CONFIG = {"displayModeBar": False}


def probe(dataset) -> tuple[str, int]:
    """The probe's split and size, as chosen in the section (val and 16 at first; a split this
    dataset lacks falls back to its first)."""
    splits = dataset.present_splits()
    if st.session_state.get("sa_trust_split") not in splits:
        st.session_state["sa_trust_split"] = dataset.default_split(splits)
    return st.session_state["sa_trust_split"], st.session_state.get("sa_trust_n", 16)


def current_report(ckpt, dataset):
    """The finished report for the chosen probe, or None."""
    return trust_jobs.report(ckpt, dataset, *probe(dataset))


def flag_note(report, method: str) -> None:
    """Under the method selector: the checks this method fails (a warning) and those it passes
    (a caption), each with its numbers against the baseline."""
    if report is None:
        st.caption("Sanity check not run for this checkpoint yet: see *Can I trust this map?* "
                   "below.")
        return
    m = report.by_method().get(method)
    if m is None:
        return
    failed = report.failed_checks(m)
    verdicts = check_sentences(report, m)
    if failed:
        st.warning(" ".join(verdicts[c][0] for c in failed), icon=":material/flag:")
    passed = [verdicts[c][1] for c in verdicts if c not in failed]
    if passed:
        st.caption(":material/check: Passes " + "; ".join(passed) + ".")


def check_sentences(report, m) -> dict[str, tuple[str, str]]:
    """Per check of `m` (localization only with parts): (what failing it says, what passing it
    says), with the numbers."""
    rho, layers = m.randomization_spearman[-1], len(report.layers)
    auc, floor = m.deletion_auc, report.random_deletion_auc
    sentences = {
        "sanity": (f"Fails the sanity check: with all {layers} layers randomized its maps still "
                   f"correlate {rho:.2f} (Spearman) with the trained model's, so they show the "
                   f"image more than what the model learned.",
                   f"the sanity check: with all {layers} layers randomized its maps correlate "
                   f"{rho:.2f} with the trained model's (flag at {FLAG_AT})"),
        "deletion": (f"Deletes worse than a random order: removing its top pixels first leaves "
                     f"an area of {auc:.3f} against {floor:.3f} (lower is more faithful).",
                     f"deletion: area {auc:.3f} against {floor:.3f} for a random order")}
    if m.parts_share is not None:
        share, area = m.parts_share, report.parts_area_share
        sentences["localization"] = (
            f"Localizes no better than an evenly spread map: {share:.0%} of its attribution on "
            f"the brows, eyes and mouth, which cover {area:.0%} of the image.",
            f"localization: {share:.0%} on the brows, eyes and mouth against {area:.0%} for an "
            f"evenly spread map")
    return sentences


def method_label(report):
    """The method selector's labels: the title, with a flag when the method fails any check."""
    flagged = set() if report is None else {m.method for m in report.methods
                                            if report.failed_checks(m)}
    return lambda title, key: f"{title} ⚠" if key in flagged else title


def show_section(ckpt, dataset, chosen, result, report) -> None:
    """`report`: `current_report`'s answer earlier in the same run (the probe's widgets below
    change it only through a rerun)."""
    st.subheader("Can I trust this map?")
    left, right = st.columns(2, gap="large")
    with left:
        show_deletion(ckpt, chosen, result)
    with right:
        show_probe_choice(dataset)
    if report is None:
        show_job(ckpt, dataset, *probe(dataset))
        return
    show_report(report)


@st.cache_data(max_entries=64, show_spinner=False)
def deletion_pair(_model, model_key: tuple, face: np.ndarray, values: np.ndarray,
                  explained: int) -> tuple[np.ndarray, np.ndarray]:
    """(the map's deletion curve, a random order's) for one face: 42 forward passes, so kept
    per checkpoint version, face, map and class rather than redone on every rerun."""
    return face_deletion(_model, face, values, explained)


def show_deletion(ckpt, chosen, result) -> None:
    """This face's deletion curve for the current map, following the class the map explains,
    against a random order."""
    classes = ckpt.task.classes
    explained, _ = output_classes(result.output, len(classes))
    curve, floor = deletion_pair(ckpt.model, memo_key(ckpt),
                                 chosen.face, result.values, explained)
    st.plotly_chart(trust_charts.deletion_figure(curve, floor, result.title, classes[explained]),
                    config=CONFIG, key="sa_deletion")
    st.caption(f"The map's most important pixels are replaced by a blurred copy of the face, 5% "
               f"at a time, and the probability of {classes[explained]} (the class the map "
               f"explains) is followed. A faithful map finds the evidence, so the curve falls "
               f"faster than the random order's.")


def show_probe_choice(dataset) -> None:
    splits = dataset.present_splits()
    cols = st.columns(2)
    cols[0].selectbox("Probe split", splits, key="sa_trust_split", persist_state="session")
    cols[1].number_input("Probe faces (the split's first N)", 4, 64, 16, 4, key="sa_trust_n",
                         persist_state="session")
    st.caption("The checks below run every method on these faces: the sanity check (Adebayo et "
               "al. 2018) re-initializes the layers one by one from the head down and compares "
               "each method's maps with the trained model's; deletion and, on the built-in "
               "faces, localization on the drawn brows, eyes and mouth.")


def show_job(ckpt, dataset, split: str, n: int) -> None:
    job = trust_jobs.running(ckpt, dataset, split, n)
    if job is None or job.error:
        if job is not None:
            st.error(f"The trust checks failed: {job.error}", icon=":material/error:")
        st.info(f"Not run yet for **{ckpt.path.parent.name}** on the first {n} {split} faces. "
                f"With cnn3 they take about 2 minutes on a 2-core CPU (ResNet18 longer), in the "
                f"background: the page stays usable, and the result is kept on disk.",
                icon=":material/schedule:")
        if st.button("Run the trust checks", key="sa_trust_run", icon=":material/play_arrow:"):
            trust_jobs.start(ckpt, dataset, split, n)
            st.rerun()
        return
    follow(job)


@st.fragment(run_every=1.0)
def follow(job) -> None:
    """The running job's progress, polled every second; the whole page reruns when it ends, so
    the method flags appear."""
    st.progress(min(job.fraction, 1.0), text=f"Trust checks: {job.text}")
    if job.done.is_set():
        st.rerun()


def show_report(report) -> None:
    """The checks against their baselines, the table of the methods below, then the sanity
    check's randomization curves."""
    st.plotly_chart(trust_charts.checks_figure(report), config=CONFIG, key="sa_checks")
    st.dataframe(comparison(report), hide_index=True, height=content_height(len(report.methods)),
                 column_config={"on the parts": st.column_config.NumberColumn(format="percent")})
    st.caption(baselines(report))
    st.plotly_chart(trust_charts.randomization_figure(report), config=CONFIG,
                    key="sa_randomization")


def baselines(report) -> str:
    """What the table's numbers are and the baselines they are judged against (one per report,
    so not repeated in the table)."""
    text = (f"Means over {report.faces} faces. Sanity: flagged when the maps still correlate "
            f"{FLAG_AT} or more with every layer randomized. Deletion: area under the "
            f"probability curve (lower is more faithful); flagged at a random order's "
            f"{report.random_deletion_auc:.3f} or more.")
    if report.parts_area_share is not None:
        text += (f" On the parts: share of the attribution on the drawn brows, eyes and mouth; "
                 f"flagged at the {report.parts_area_share:.1%} an evenly spread map puts there "
                 f"or less.")
    return text


def comparison(report) -> pd.DataFrame:
    """One row per method: the checks it fails, then its value on each check."""
    rows = []
    for m in report.methods:
        failed = report.failed_checks(m)
        row = {"method": m.title,
               "flags": ", ".join(f"⚠ {FAILURES[c]}" for c in failed) or "passes every check",
               "ρ, all randomized": round(m.randomization_spearman[-1], 3),
               "deletion area": round(m.deletion_auc, 3)}
        if m.parts_share is not None:
            row["on the parts"] = m.parts_share
        rows.append(row)
    return pd.DataFrame(rows)
