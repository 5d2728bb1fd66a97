"""What this machine gives the project, for `python -m fer_core env` and the Home page: the
versions of Python and of the packages, the device and its memory, whether torchvision's ops
load, whether faces can be found in photos; and one line per problem, naming the fix.

A package that is missing or broken is a fact to report, never a traceback, so every check
imports inside a try. A torchvision built for another torch fails at `import torchvision`
(RuntimeError: operator torchvision::nms does not exist), or at its first op when only its
compiled ops are missing: the check imports it and runs `nms` once.

Like the package's `__init__`, this module may look at any layer (face finding is
`data.photos`'s); it imports only the standard library at the top, so the models can import it
to word their own torchvision errors.
"""

import importlib
import os
import platform
from dataclasses import dataclass
from importlib import metadata

from .errors import FerError

NOT_INSTALLED = "not installed"
UNCHECKED = "not checked: torch does not import"
# A broken build can raise anything at import (a torchvision newer than torch: AttributeError),
# so the checks catch Exception.


@dataclass(frozen=True)
class Fact:
    """One line of the report, and the problem it shows (what is wrong and the fix) or None."""

    name: str
    value: str
    problem: str | None = None


def one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def report() -> list[Fact]:
    """Python, the packages' versions, the device, torchvision's ops and face finding. OpenCV's
    line carries no problem of its own: face finding's names the fix."""
    torch = package_fact("torch", "torch", "torch")
    works = torch.problem is None
    opencv = package_fact("OpenCV", "cv2", "opencv-python-headless")
    return [Fact("Python", platform.python_version()), torch,
            torchvision_fact() if works else Fact("torchvision", UNCHECKED),
            package_fact("streamlit", "streamlit", "streamlit"),
            package_fact("captum", "captum", "captum"),
            Fact(opencv.name, opencv.value),
            device_fact() if works else Fact("device", UNCHECKED),
            face_finding_fact()]


def problems(facts: list[Fact]) -> list[str]:
    return [fact.problem for fact in facts if fact.problem]


def package_fact(name: str, module: str, requirement: str) -> Fact:
    """The version `module` reports once imported, 'not installed', or its import's error."""
    try:
        return Fact(name, importlib.import_module(module).__version__)
    except ModuleNotFoundError as e:
        if e.name == module:
            return Fact(name, NOT_INSTALLED, f"{name} is not installed: pip install {requirement}")
        error = e
    except Exception as e:
        error = e
    return Fact(name, f"import fails ({one_line(error)})",
                f"{name} does not import ({one_line(error)}): reinstall it: pip install "
                f"--force-reinstall {requirement}")


def torchvision_fact() -> Fact:
    """torchvision's version and whether its compiled ops run (one `nms` on one box)."""
    try:
        import torch
        import torchvision

        torchvision.ops.nms(torch.zeros(1, 4), torch.ones(1), 0.5)
    except Exception as e:
        version = distribution_version("torchvision")
        shown = f"{version}, its ops do not load ({one_line(e)})"
        return Fact("torchvision", NOT_INSTALLED if version == NOT_INSTALLED else shown,
                    torchvision_problem(e))
    return Fact("torchvision", f"{torchvision.__version__}, its ops load")


def distribution_version(name: str) -> str:
    """The installed version as pip recorded it (no import), or NOT_INSTALLED."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def torchvision_problem(error: BaseException) -> str:
    """One line for a torchvision that is missing or does not import or run with this torch:
    what failed and the pip command for the torchvision paired with the installed torch (which
    imports: both callers have imported it)."""
    import torch

    base = torch.__version__.split("+")[0]
    major, minor = (base.split(".") + ["", ""])[:2]
    paired = (f'"torchvision==0.{int(minor) + 15}.*"' if major == "2" and minor.isdigit()
              else "torchvision")  # torch 2.N pairs with torchvision 0.(N+15)
    fix = f"pip install torch=={base} {paired}"
    vision = distribution_version("torchvision")
    if vision == NOT_INSTALLED:
        return f"torchvision is not installed: {fix}"
    return (f"torchvision {vision} does not work with torch {torch.__version__} "
            f"({one_line(error)}): install the torchvision release paired with torch: {fix}")


def device_fact() -> Fact:
    """The device `choose_device` picks (FER_DEVICE, else cuda, mps, cpu) and its memory."""
    from .device import choose_device, describe_device

    try:
        device = choose_device()
        text = f"{device.type}: {describe_device(device)}"
    except FerError as e:
        return Fact("device", str(e), f"FER_DEVICE: {e}")
    except Exception as e:  # a GPU whose driver fails when asked
        return Fact("device", one_line(e), f"the device does not answer ({one_line(e)}): "
                                           "check its driver, or set FER_DEVICE=cpu")
    memory = machine_memory_gib()
    if device.type != "cuda" and memory is not None:  # describe_device gives a GPU's own
        text += f", {memory:.0f} GiB of memory"
    return Fact("device", text)


def machine_memory_gib() -> float | None:
    """The machine's RAM in GiB, or None where the system does not say (os.sysconf)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (AttributeError, ValueError, OSError):
        return None


def face_finding_fact() -> Fact:
    """Whether photos can be searched for faces (OpenCV 4.x with its Haar cascades)."""
    from .data.photos import FaceFindingUnavailable, haar_cascade

    try:
        haar_cascade()
    except FaceFindingUnavailable as e:
        return Fact("face finding", "unavailable: photos are used whole",
                    f'{e}: pip install "opencv-python-headless<5"')
    return Fact("face finding", "available (OpenCV Haar cascade)")
