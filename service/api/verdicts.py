"""``POST /v1/accounts/{account_id}/verdict``: the analyst's verdict about an account (scope
``review``), with the effect of ``distillguard verdict`` (see :mod:`detector.verdicts`).

Durable like ingest: the verdict is appended to ``verdicts.jsonl`` in the state directory and
fsync'd before the answer (a write that fails answers 503 and keeps nothing); it is read back at
start. The account is rescored at the next pass: an allow-listed account is then no longer
flagged, and no campaign lifts it. ``GET /v1/accounts/{id}`` shows the current verdict.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from detector.verdicts import MAX_BY_CHARS, MAX_NOTE_CHARS, Verdict, VerdictError, make_verdict
from service.api.deps import ReadyStateDep, ReviewAccess

router = APIRouter(prefix="/v1/accounts", tags=["verdicts"])


class VerdictIn(BaseModel):
    verdict: Literal["abuse", "benign", "allow"] = Field(
        description="abuse: confirmed (a training label); benign: a false positive (a label); "
        "allow: allow-listed, never flagged, and no campaign lifts it."
    )
    note: str = Field(default="", max_length=MAX_NOTE_CHARS, description="Why.")
    by: str = Field(
        default="api", min_length=1, max_length=MAX_BY_CHARS, description="Who decided."
    )


class VerdictOut(BaseModel):
    account_id: str
    verdict: str
    at: datetime = Field(description="When it was recorded (UTC).")
    by: str
    note: str
    reason: str = Field(description="How it reads among the account's reasons.")

    @classmethod
    def of(cls, v: Verdict) -> VerdictOut:
        return cls(
            account_id=v.account_id,
            verdict=v.verdict,
            at=v.at,
            by=v.by,
            note=v.note,
            reason=v.reason(),
        )


class VerdictAnswer(VerdictOut):
    tracked: bool = Field(
        description="The account has events in the window: it is rescored at the next pass."
    )


@router.post(
    "/{account_id:path}/verdict",  # identifiers may hold '/' (an ARN, a resource id)
    response_model=VerdictAnswer,
    status_code=status.HTTP_201_CREATED,
    summary="Record the analyst's verdict about an account",
    responses={
        422: {"description": "Not a verdict, or an account id breaking the identifier rules."},
        503: {"description": "The verdict could not be written durably (nothing was kept)."},
    },
)
async def post_verdict(
    account_id: str, body: VerdictIn, _: ReviewAccess, state: ReadyStateDep
) -> VerdictAnswer:
    """Keep the verdict (written and fsync'd before this answers); the latest verdict of an
    account wins. The account need not have events in the window."""
    try:
        v = make_verdict(account_id, body.verdict, by=body.by, note=body.note)
    except VerdictError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from None
    try:
        tracked = await asyncio.to_thread(state.record_verdict, v)
    except OSError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"verdict not recorded: {exc}"
        ) from None
    return VerdictAnswer(**VerdictOut.of(v).model_dump(), tracked=tracked)
