"""Every error that can cross the queue worker's process boundary comes back intact: an
exception that cannot be unpickled in the parent breaks the whole pool (issue 19.2)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import functions.queue_worker.pool as pool_module
import functions.store
import reportgrid.client
from reportgrid import errors
from reportgrid.engine import exceptions as engine_exceptions
from reportgrid.errors import FieldViolation

# One way to build each class; a class missing here fails the completeness test, so a new
# error cannot skip the round trip.
SAMPLES: dict[type[BaseException], tuple[tuple[Any, ...], dict[str, Any]]] = {
    errors.ReportgridError: (("boom",), {}),
    errors.InvalidArgument: (([FieldViolation("params.x", "bad"), FieldViolation("y", "z")],), {}),
    errors.OutOfRange: (([FieldViolation("read_offset", "is past the end")],), {}),
    errors.NotFound: (("report", "r-1"), {}),
    errors.FailedPrecondition: (("report r-1", "it is running"), {"type_": "STATE"}),
    errors.IdempotencyKeyReused: (("made from another request",), {"key": "k-1"}),
    errors.IllegalTransition: (("report r-1", "RUNNING", "PENDING"), {}),
    errors.Conflict: (("raced",), {}),
    errors.Unauthenticated: (("no key",), {}),
    errors.PermissionDenied: (("tenant disabled",), {}),
    errors.ResourceExhausted: (("slow down",), {"retry_after": 2.5, "subject": "tenant"}),
    errors.Unavailable: (("later",), {"retry_after": 3.0}),
    errors.DeadlineExceeded: (("too late",), {}),
    errors.Internal: (("defect",), {}),
    errors.SettingsError: (("bad env",), {}),
    errors.ReportFailure: (("MISSING_COLUMN", "the input has no column 'x'"), {}),
    functions.store.StoreRejected: (("rejected",), {}),
    functions.store.LeaseLost: (("lost",), {}),
    functions.store.ReportDeleted: (("deleted",), {}),
    reportgrid.client.ChecksumMismatch: (("sha differs",), {}),
    engine_exceptions.EngineError: ((), {}),
    engine_exceptions.Cancelled: ((), {}),
    pool_module.UnpicklableError: (("SomeError",), {}),
}


def _all_subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


def test_every_error_class_has_a_sample() -> None:
    known = (
        _all_subclasses(errors.ReportgridError)
        | _all_subclasses(engine_exceptions.EngineError)
        | {errors.ReportgridError, engine_exceptions.EngineError, pool_module.UnpicklableError}
    )
    project = {c for c in known if c.__module__.split(".")[0] in ("reportgrid", "functions")}
    assert project - set(SAMPLES) == set()


@pytest.mark.parametrize("cls", sorted(SAMPLES, key=str), ids=str)
def test_error_pickles_intact(cls: type[BaseException]) -> None:
    args, kwargs = SAMPLES[cls]
    err = cls(*args, **kwargs)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert back.args == err.args
    assert vars(back) == vars(err)
    assert str(back) == str(err)


def test_report_failure_message_is_bounded() -> None:
    failure = errors.ReportFailure("MISSING_COLUMN", "é" * 10_000)
    assert len(failure.message.encode()) <= 1024
    assert failure.message.endswith("…")
    assert pickle.loads(pickle.dumps(failure)).message == failure.message


def _raise_unpicklable(_request: Any) -> Any:
    class Local(Exception):  # a class pickle cannot find by name
        pass

    raise Local("defect")


def test_an_unpicklable_exception_in_a_child_becomes_a_safe_one() -> None:
    with pytest.raises(pool_module.UnpicklableError) as caught:
        pool_module.run_guarded(_raise_unpicklable, None)  # type: ignore[arg-type]
    pickle.loads(pickle.dumps(caught.value))
    assert "Local" in str(caught.value)
