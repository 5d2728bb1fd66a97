"""Classes of two tasks matched by meaning, never by position, and faces converted to a model's
size and channels (`fer_core.data.matching`)."""

import numpy as np
import pytest
from dataset_helpers import RAF_DB_NAMES, in_other_task

from fer_core.data.builtin import make_builtin_faces
from fer_core.data.classes import CLASSES
from fer_core.data.matching import convert_faces, for_model, match_classes, meaning
from fer_core.data.task import FER2013, Task
from fer_core.errors import FerError

FERPLUS = Task(("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                "contempt"))


@pytest.fixture(scope="module")
def faces():
    return make_builtin_faces(n=140, seed=2)


def test_synonyms_and_case_are_one_meaning():
    assert {meaning(n) for n in ("Anger", "angry", " ANGRY ")} == {"angry"}
    assert [meaning(n) for n in ("happiness", "Sadness", "Surprised", "fearful", "Disgusted")] \
        == ["happy", "sad", "surprise", "fear", "disgust"]
    assert meaning("Contempt") == "contempt" and meaning("bored") == "bored"


def test_raf_db_names_in_raf_db_order_match_fer2013_by_meaning():
    match = match_classes(Task(RAF_DB_NAMES), FER2013)
    assert [FER2013.classes[k] for k in match.to_model] == \
        ["Surprise", "Fear", "Disgust", "Happy", "Sad", "Angry", "Neutral"]
    assert match.data_only() == [] and match.model_only() == []


def test_ferplus_model_on_fer2013_data_has_contempt_only_on_the_model_side():
    match = match_classes(FER2013, FERPLUS)
    assert match.model_only() == ["contempt"] and match.data_only() == []
    assert [FERPLUS.classes[k] for k in match.to_model] == \
        ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]


def test_no_shared_class_is_refused():
    with pytest.raises(FerError, match="share none"):
        match_classes(Task(("cat", "dog")), FER2013)


def test_for_model_relabels_by_name_converts_faces_and_leaves_out_unshared_classes(faces):
    raf = in_other_task(faces, size=64)
    five = Task(("Happy", "Sad", "Angry", "Neutral", "Surprise"))
    seen = for_model(raf, five)
    assert seen.task == five and seen.images.shape[1:] == (1, 48, 48)
    dropped = np.isin(faces.labels, [CLASSES.index("Disgust"), CLASSES.index("Fear")])
    assert len(seen) == (~dropped).sum()
    expected = [five.classes.index(CLASSES[k]) for k in faces.labels[~dropped]]
    assert seen.labels.tolist() == expected
    assert seen.notes == ("classes only the data has: fear, disgust",
                          f"{dropped.sum()} face(s) of classes the model lacks left out",
                          "faces converted from 64x64 colour to the model's 48x48 grey")
    assert seen.fingerprint != raf.fingerprint
    assert for_model(faces, FER2013) is faces


def test_converted_faces_are_luminance_resized_and_grey_repeats_into_colour(faces):
    colour = in_other_task(faces, size=64).images[:4]
    grey = convert_faces(colour, 64, 1)
    expected = np.einsum("nchw,c->nhw", colour.astype(np.float64), [0.299, 0.587, 0.114])
    assert np.abs(grey[:, 0].astype(float) - expected).max() <= 0.5 + 1e-6
    back = convert_faces(grey, 32, 3)
    assert back.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(back[:, 0], back[:, 2])


def test_grey_faces_for_a_colour_model_of_the_same_size_are_repeated(faces):
    colour = for_model(faces, FER2013.with_input(channels=3))
    assert colour.images.shape == (len(faces), 3, 48, 48)
    for channel in range(3):
        np.testing.assert_array_equal(colour.images[:, channel], faces.images[:, 0])
