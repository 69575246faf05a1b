"""``GET /v1/campaigns`` and ``GET /v1/campaigns/{campaign_id}``.

Campaigns come from the last campaign pass (see :mod:`service.live_campaigns`): the offline
campaign detection run on the whole window every ``campaign_interval_s`` seconds. Each list says
which window it was computed on and whether events arrived since (``current``).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from service.api.deps import ReadAccess, ReadyStateDep
from service.records import CampaignView

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


class Campaign(BaseModel):
    campaign_id: str = Field(description="Deterministic id: a hash of the sorted member ids.")
    score: float = Field(
        description="0-100 on the account scale: its typical member's score once the campaign "
        "is counted."
    )
    size: int = Field(description="Member accounts.")
    members: list[str]
    reasons: list[str] = Field(description="What the members share, and how unusual they are.")
    lift: float = Field(
        description="Raw-score units added to members scoring >= 90 on their own; 0 for a "
        "campaign whose typical member is ordinary (a company NAT, users of one app): it lifts "
        "nobody."
    )
    strength: float = Field(description="0-1: how unusual its typical member is on its own.")
    typical_member_score: float | None = Field(
        description="Median of the members' own scores (before campaign evidence)."
    )
    members_flagged_alone: int = Field(description="Members flagged on their own.")


class CampaignWindow(BaseModel):
    start: datetime | None = Field(description="Oldest event of the window the pass saw.")
    end: datetime | None = Field(description="Newest event of the window the pass saw.")
    events: int = Field(description="Events in that window.")
    accounts: int = Field(description="Accounts in that window.")


class CampaignList(BaseModel):
    count: int
    computed_at: datetime | None = Field(
        description="Wall-clock time of the last campaign pass; null before the first."
    )
    current: bool = Field(
        description="No event was added to or evicted from the window since that pass."
    )
    window: CampaignWindow | None = Field(description="The window the last pass ran on.")
    campaigns: list[Campaign]


def _out(c: CampaignView) -> Campaign:
    return Campaign(
        campaign_id=c.campaign_id,
        score=c.score,
        size=len(c.members),
        members=list(c.members),
        reasons=list(c.reasons),
        lift=c.lift,
        strength=c.strength,
        typical_member_score=c.median_score,
        members_flagged_alone=c.n_flagged_alone,
    )


@router.get("", response_model=CampaignList, summary="Detected campaigns")
async def list_campaigns(_: ReadAccess, state: ReadyStateDep) -> CampaignList:
    """Campaigns (groups of linked accounts) of the last campaign pass, highest score first."""
    live = state.live
    found = sorted(live.views.values(), key=lambda c: (-c.score, c.campaign_id))
    last = live.last
    return CampaignList(
        count=len(found),
        computed_at=last.computed_at if last else None,
        current=state.campaigns_current,
        window=(
            CampaignWindow(
                start=last.window_start,
                end=last.window_end,
                events=last.n_events,
                accounts=last.n_accounts,
            )
            if last
            else None
        ),
        campaigns=[_out(c) for c in found],
    )


@router.get(
    "/{campaign_id}",
    response_model=Campaign,
    summary="One campaign",
    responses={404: {"description": "No such campaign."}},
)
async def get_campaign(campaign_id: str, _: ReadAccess, state: ReadyStateDep) -> Campaign:
    """A campaign's score, members, reasons and lift."""
    found = state.campaigns.get(campaign_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown campaign {campaign_id!r}")
    return _out(found)
