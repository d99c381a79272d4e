"""`/v1/ranks` and `/v1/members/{id}/rank`: the programme's tiers, evaluation, a member's rank.

Configuring and evaluating need `campaigns:manage`, or a staff session with `campaigns:write`;
reading the ranking `members:read` (the app shows it) or `campaigns:read`; reading a member's rank
and progress (for the app's マイページ and the balance view) needs `members:read`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from kizuna.api.deps import (
    CampaignsWriter,
    IdempotencyKey,
    MembersReader,
    RanksReader,
    ReadSessionDep,
    SessionDep,
)
from kizuna.api.idempotent import idempotent
from kizuna.api.problems import ERROR_RESPONSES
from kizuna.clients import access as client_access
from kizuna.core.clock import utcnow
from kizuna.core.errors import NotFound
from kizuna.security import access
from kizuna.tiers import evaluation
from kizuna.tiers import service as tiers
from kizuna.tiers.domain import Metric, RankRules, TierSpec, Window
from kizuna.tiers.errors import ErrorCode
from kizuna.tiers.schemas import (
    EvaluationRead,
    MemberRankRead,
    RankChangeRead,
    RanksIn,
    RanksRead,
    TierRead,
)

router = APIRouter(tags=["ranks"], responses=ERROR_RESPONSES)


def tier_read(tier: TierSpec | None) -> TierRead | None:
    """The API shape of a tier."""
    if tier is None:
        return None
    return TierRead(
        code=tier.code,
        name=tier.name,
        level=tier.level,
        threshold=tier.threshold,
        earn_multiplier_pct=tier.earn_multiplier_pct,
        birthday_points=tier.birthday_points,
    )


def ranks_read(rules: RankRules) -> RanksRead:
    return RanksRead(
        metric=str(rules.metric),
        window=str(rules.window),
        fiscal_year_start_month=rules.fiscal_year_start_month,
        tiers=[read for tier in rules.tiers if (read := tier_read(tier)) is not None],
    )


def _rules(session: Session, program_id: int) -> RankRules:
    rules = tiers.rules_of(session, program_id)
    if rules is None:
        raise NotFound(ErrorCode.RANK_POLICY_NOT_FOUND, "this programme has no ranks")
    return rules


@router.get("/v1/ranks", response_model=RanksRead)
def get_ranks(caller: RanksReader, session: ReadSessionDep) -> RanksRead:
    """The programme's ranking: metric, window and tiers."""
    return ranks_read(_rules(session, access.program(caller)))


@router.put("/v1/ranks", response_model=RanksRead)
def configure(
    body: RanksIn,
    request: Request,
    caller: CampaignsWriter,
    key: IdempotencyKey,
    session: SessionDep,
) -> JSONResponse:
    """Set the programme's ranking; tiers are matched by code."""

    def action() -> tuple[int, RanksRead]:
        program_id = access.program(caller)
        rules = tiers.configure(
            session,
            program_id=program_id,
            metric=Metric(body.metric),
            window=Window(body.window),
            fiscal_year_start_month=body.fiscal_year_start_month,
            tiers=[tiers.TierInput(**tier.model_dump()) for tier in body.tiers],
        )
        access.record(
            session,
            caller,
            action="ranks.configure",
            target=f"program:{program_id}",
            details={"tiers": [tier.code for tier in body.tiers], "metric": body.metric},
            as_of=utcnow(),
        )
        return 200, ranks_read(rules)

    return idempotent(session, request=request, client=caller, key=key, body=body, action=action)


@router.post("/v1/ranks/evaluate", response_model=EvaluationRead)
def evaluate(
    request: Request, caller: CampaignsWriter, key: IdempotencyKey, session: SessionDep
) -> JSONResponse:
    """Evaluate every member's rank now (the worker does this on the evaluation date)."""

    def action() -> tuple[int, EvaluationRead]:
        program_id = access.program(caller)
        changed = evaluation.evaluate_ranks(session, program_id=program_id, as_of=utcnow())
        access.record(
            session,
            caller,
            action="ranks.evaluate",
            target=f"program:{program_id}",
            details={"changed": changed},
            as_of=utcnow(),
        )
        return 200, EvaluationRead(changed=changed)

    return idempotent(session, request=request, client=caller, key=key, body=None, action=action)


@router.get("/v1/members/{member_id}/rank", response_model=MemberRankRead)
def member_rank(member_id: int, client: MembersReader, session: ReadSessionDep) -> MemberRankRead:
    """The member's rank, the metric so far in this window and what the next rank needs."""
    client_access.member(session, client, member_id)
    rules = _rules(session, client.program_id)
    shown = tiers.progress(session, member_id=member_id, as_of=utcnow())
    assert shown is not None
    codes = {tier.id: tier.code for tier in rules.tiers}
    return MemberRankRead(
        member_id=member_id,
        tier=tier_read(shown.tier),
        metric=str(shown.metric),
        value=shown.value,
        period_start=shown.period_start,
        period_end=shown.period_end,
        next_tier=tier_read(shown.next_tier),
        remaining=shown.remaining,
        history=[
            RankChangeRead(
                from_tier=codes.get(change.from_tier_id) if change.from_tier_id else None,
                to_tier=codes.get(change.to_tier_id, "?"),
                changed_at=change.changed_at,
                reason=change.reason,
                metric_value=change.metric_value,
            )
            for change in tiers.history(session, member_id=member_id)
        ],
    )
