"""One-line descriptions of exceptions, naming out-of-memory as such in every framework."""

from __future__ import annotations

_OOM_MARKERS = ("out of memory", "resource_exhausted", "outofmemory", "failed to allocate")


def describe(exc: BaseException) -> str:
    """`Type: first line`, prefixed `out of memory:` when that is what it is.

    Frameworks spell OOM differently: MemoryError (numpy), torch.OutOfMemoryError,
    XlaRuntimeError "RESOURCE_EXHAUSTED" (JAX), ResourceExhaustedError (TensorFlow).
    """
    text = str(exc).strip()
    first = _headline(text)
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    probe = f"{type(exc).__name__} {text[:2000]}".lower()
    if isinstance(exc, MemoryError) or any(m in probe for m in _OOM_MARKERS) or (
        "resourceexhausted" in probe
    ):
        return f"out of memory: {what}"
    return what


_NOISE = ("File ", "Detected at", "[[", "Traceback", "(most recent call")


def _headline(text: str) -> str:
    """The message's first line, or, when that is only a heading ("Graph execution
    error:", as TensorFlow writes), the heading and the first line that says something."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    if lines[0].endswith(":"):
        said = [ln for ln in lines[1:] if not ln.startswith(_NOISE)]
        if said:
            return f"{lines[0]} {said[0]}"
    return lines[0]
