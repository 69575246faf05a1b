"""``GET /v1/campaigns`` and ``GET /v1/campaigns/{campaign_id}``.

Campaign detection is not wired into the live rescoring yet: ``state.campaigns`` is empty, so
the list is empty and every id is 404. The response shapes are final.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from service.api.deps import ReadAccess, ReadyStateDep
from service.records import CampaignView

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


class Campaign(BaseModel):
    campaign_id: str
    score: float = Field(description="0-100, higher = more suspicious.")
    size: int = Field(description="Member accounts.")
    members: list[str]
    reasons: list[str]


class CampaignList(BaseModel):
    count: int
    campaigns: list[Campaign]


def _out(c: CampaignView) -> Campaign:
    return Campaign(
        campaign_id=c.campaign_id,
        score=c.score,
        size=len(c.members),
        members=list(c.members),
        reasons=list(c.reasons),
    )


@router.get("", response_model=CampaignList, summary="Detected campaigns")
async def list_campaigns(_: ReadAccess, state: ReadyStateDep) -> CampaignList:
    """Campaigns (groups of linked accounts), highest score first."""
    found = sorted(state.campaigns.values(), key=lambda c: (-c.score, c.campaign_id))
    return CampaignList(count=len(found), campaigns=[_out(c) for c in found])


@router.get(
    "/{campaign_id}",
    response_model=Campaign,
    summary="One campaign",
    responses={404: {"description": "No such campaign."}},
)
async def get_campaign(campaign_id: str, _: ReadAccess, state: ReadyStateDep) -> Campaign:
    """A campaign's score, members and reasons."""
    found = state.campaigns.get(campaign_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown campaign {campaign_id!r}")
    return _out(found)
