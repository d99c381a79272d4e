"""`kizuna reconcile`: check every invariant of the points ledger and say who is out of balance."""

from __future__ import annotations

from collections import Counter

import typer
from rich.console import Console
from rich.table import Table

from kizuna.cli.context import database
from kizuna.ledger import reconcile as reconciliation
from kizuna.ledger.reconcile import Invariant

console = Console()

LABELS: dict[str, dict[Invariant, str]] = {
    "ja": {
        Invariant.BALANCE: "残高 = 仕訳合計 = ロット残 − 負債",
        Invariant.DEBT: "負債 = 仕訳の負債増減の合計",
        Invariant.DEBT_NEGATIVE: "負債が負でない",
        Invariant.LOT_RANGE: "ロット残が 0 以上かつ付与数以下",
        Invariant.LOT_ALLOCATIONS: "ロット残 = 付与数 − 割当合計 − 失効数",
        Invariant.ENTRY_BALANCED: "仕訳ごとの貸借 (作成ロット − 割当 − 失効 = 増減 + 負債増減)",
        Invariant.EXPIRE_LOTS: "失効仕訳 = そのロットの失効数の合計",
        Invariant.REDEEM_ALLOCATIONS: "利用の割当が正で利用数と一致",
        Invariant.CANCEL_TARGET: "取消は同じ会員の仕訳を指す",
        Invariant.CANCEL_WITHIN: "取消の合計が元の仕訳を超えない",
        Invariant.SAME_MEMBER: "割当・ロット・仕訳が同じ会員のもの",
    },
    "en": {
        Invariant.BALANCE: "balance = journal total = lots remaining − debt",
        Invariant.DEBT: "debt = total of journal debt changes",
        Invariant.DEBT_NEGATIVE: "debt is not negative",
        Invariant.LOT_RANGE: "lot remaining within 0..amount",
        Invariant.LOT_ALLOCATIONS: "lot remaining = amount − allocations − expired points",
        Invariant.ENTRY_BALANCED: (
            "each entry balances (lots created − allocated − written off = amount + debt)"
        ),
        Invariant.EXPIRE_LOTS: "an expire entry = the points its lots wrote off",
        Invariant.REDEEM_ALLOCATIONS: "redemption allocations positive and complete",
        Invariant.CANCEL_TARGET: "a cancel refers to an entry of the same member",
        Invariant.CANCEL_WITHIN: "cancels never reverse more than the entry",
        Invariant.SAME_MEMBER: "allocations, lots and entries belong to one member",
    },
}
TEXT = {
    "ja": {
        "clean": "台帳は整合しています: 不変条件の違反はありません",
        "broken": "{n} 件の違反 ({m} 名の会員)",
        "member": "会員",
        "invariant": "不変条件",
        "detail": "詳細",
        "more": "… ほか {n} 件",
    },
    "en": {
        "clean": "The ledger balances: no invariant is broken",
        "broken": "{n} violations ({m} members)",
        "member": "member",
        "invariant": "invariant",
        "detail": "detail",
        "more": "… and {n} more",
    },
}


def reconcile(
    member: list[int] = typer.Option(None, "--member", "-m", help="Check only these member ids."),
    lang: str = typer.Option("ja", help="Output language: ja or en."),
    limit: int = typer.Option(50, help="Show at most this many violations."),
) -> None:
    """Check every ledger invariant; exit 1 naming the members and rules that fail, 0 if clean."""
    text, labels = TEXT.get(lang, TEXT["ja"]), LABELS.get(lang, LABELS["ja"])
    db = database()
    try:
        with db.read() as session, console.status("reconcile …"):
            violations = reconciliation.check(session, member or None)
    finally:
        db.dispose()
    if not violations:
        console.print(f"[green]✓ {text['clean']}[/green]")
        return
    members = sorted({violation.member_id for violation in violations})
    console.print(f"[red]✗ {text['broken'].format(n=len(violations), m=len(members))}[/red]")
    table = Table(text["member"], text["invariant"], text["detail"])
    for violation in violations[:limit]:
        table.add_row(
            str(violation.member_id),
            f"{violation.invariant}\n[dim]{labels[violation.invariant]}[/dim]",
            violation.detail,
        )
    console.print(table)
    if len(violations) > limit:
        console.print(text["more"].format(n=len(violations) - limit))
    for invariant, count in sorted(Counter(v.invariant for v in violations).items()):
        console.print(f"  {invariant}: {count}", soft_wrap=True)
    console.print(f"{text['member']}: {', '.join(map(str, members))}", soft_wrap=True)
    raise typer.Exit(code=1)
