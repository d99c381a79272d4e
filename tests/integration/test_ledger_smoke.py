from datetime import timedelta

from kizuna.ledger import reversal
from kizuna.ledger import service as ledger
from kizuna.ledger.domain import LedgerPolicy
from kizuna.rules.domain import BreakdownRow
from tests import factories as f


def test_earn_redeem_and_cancel_round_trip(session):
    program = f.program(session)
    member = f.member(session, program)
    policy = LedgerPolicy()
    t = f.T0
    earned = ledger.earn(
        session,
        member_id=member.id,
        rows=[BreakdownRow("base", "base", 100)],
        policy=policy,
        occurred_at=t,
        as_of=t,
    )
    spent = ledger.redeem(
        session, member_id=member.id, points=30, policy=policy, occurred_at=t, as_of=t
    )
    assert ledger.balance(session, member_id=member.id, policy=policy, as_of=t).available == 70
    reversal.reverse(session, entry_id=spent.entry_id, policy=policy, as_of=t + timedelta(days=1))
    reversal.reverse(session, entry_id=earned.entry_id, policy=policy, as_of=t + timedelta(days=2))
    view = ledger.balance(session, member_id=member.id, policy=policy, as_of=t + timedelta(days=2))
    assert (view.available, view.debt) == (0, 0)
