"""``GET /v1/accounts`` and ``GET /v1/accounts/{account_id}``: live scores and their reasons."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from detector.calibration import score_reading
from detector.severity import bands_text, severity
from service.api.deps import ReadAccess, ReadyStateDep
from service.api.verdicts import VerdictOut
from service.records import AccountView
from service.state import ScoringState

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


class Window(BaseModel):
    start: datetime = Field(description="Oldest event in the window when the score was computed.")
    end: datetime = Field(description="Newest event in the window when the score was computed.")


class AccountSummary(BaseModel):
    account_id: str
    score: float | None = Field(
        description="0-100, higher = more suspicious; null until scored. 100 * (1 - S), S the "
        "estimated share of normal accounts scoring as high: it never saturates, so accounts "
        "rank all the way up."
    )
    reading: str | None = Field(
        description="The score in words, e.g. 'rarer than 1 in 3,700 normal accounts'."
    )
    flagged: bool | None = Field(description="score >= the model's flag threshold.")
    severity: str | None = Field(
        description=f"Band of the score: {bands_text()} (null below the lowest)."
    )
    reasons: list[str] = Field(description="The features that drove the score, in words.")
    campaign: str | None = Field(
        description="Campaign the account belongs to (last campaign pass; GET /v1/campaigns/{id})."
    )
    last_seen: datetime = Field(description="Timestamp of the account's newest event.")
    pending: bool = Field(description="Events arrived since the score; the next pass updates it.")
    n_events: int | None = Field(description="Events of the account in the scored window.")
    scored_at: datetime | None = Field(description="Wall-clock time of the last rescoring.")
    window: Window | None = Field(description="The window the score was computed on.")
    verdict: VerdictOut | None = Field(
        default=None,
        description="The analyst's current verdict (POST /v1/accounts/{id}/verdict); null: none.",
    )


class Account(AccountSummary):
    score_alone: float | None = Field(
        description="The account's score on its own features, before campaign evidence (equal "
        "to score unless its campaign lifted it)."
    )
    raw_score: float | None = Field(
        description="Uncalibrated ensemble score (campaign lift included)."
    )
    features: dict[str, float | None] = Field(description="Feature values (see detector.features).")


class AccountList(BaseModel):
    threshold: float = Field(description="The model's flag threshold.")
    count: int
    accounts: list[AccountSummary]


def _summary_fields(view: AccountView, state: ScoringState) -> dict[str, object]:
    s = view.score
    return {
        "account_id": view.account_id,
        "score": s.score if s else None,
        "reading": score_reading(s.score) if s else None,
        "flagged": s.flagged if s else None,
        "severity": severity(s.score) if s else None,
        "reasons": list(s.reasons) if s else [],
        "campaign": state.campaign_of.get(view.account_id),
        "last_seen": view.last_seen,
        "pending": view.pending,
        "n_events": s.n_events if s else None,
        "scored_at": s.scored_at if s else None,
        "window": Window(start=s.window_start, end=s.window_end) if s else None,
        "verdict": VerdictOut.of(v) if (v := state.verdicts.get(view.account_id)) else None,
    }


@router.get("", response_model=AccountList, summary="The most suspicious accounts")
async def list_accounts(
    _: ReadAccess,
    state: ReadyStateDep,
    min_score: Annotated[float, Query(ge=0, le=100, description="Lowest score listed.")] = 0.0,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Most accounts returned.")] = 100,
) -> AccountList:
    """Scored accounts with `score >= min_score`, highest score first."""
    views = state.top_accounts(min_score, limit)
    return AccountList(
        threshold=float(state.model.threshold_),
        count=len(views),
        accounts=[AccountSummary.model_validate(_summary_fields(v, state)) for v in views],
    )


@router.get(
    "/{account_id:path}",  # identifiers may hold '/' (an ARN, a resource id)
    response_model=Account,
    summary="One account's live score",
    responses={404: {"description": "No event of this account is in the window."}},
)
async def get_account(account_id: str, _: ReadAccess, state: ReadyStateDep) -> Account:
    """Score, flag, reasons, campaign, feature values and last-seen time of one account."""
    view = state.account(account_id)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown account {account_id!r}")
    s = view.score
    return Account.model_validate(
        {
            **_summary_fields(view, state),
            "score_alone": (s.score if s.score_alone is None else s.score_alone) if s else None,
            "raw_score": s.raw_score if s else None,
            "features": s.feature_dict() if s else {},
        }
    )
