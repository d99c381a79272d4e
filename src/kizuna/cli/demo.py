"""`kizuna demo`: build a realistic demo programme, check its books, and serve it.

By default the demo lives in a fresh SQLite file (`./kizuna-demo.db`, recreated on every run), so
it needs nothing but Python. `--no-serve` builds, reconciles and exits (non-zero when the books do
not balance), for scripts and CI.
"""

from __future__ import annotations

from datetime import datetime, time
from pathlib import Path

import typer
import uvicorn
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from sqlalchemy.engine import make_url

from kizuna.api.app import create_app
from kizuna.console.auth import CONSOLE
from kizuna.core.clock import utcnow
from kizuna.core.settings import Settings
from kizuna.db.database import Database
from kizuna.db.migrate import upgrade
from kizuna.demo.builder import (
    DemoSummary,
    build_demo,
    create_demo_staff,
    demo_exists,
    plan_events,
)
from kizuna.demo.plan import TOKYO, Event
from kizuna.ledger.reconcile import check

DEFAULT_URL = "sqlite:///./kizuna-demo.db"
console = Console()


def _fresh_sqlite(url: str) -> None:
    """Delete the demo's SQLite file (and its WAL companions) so that every run starts clean."""
    database = make_url(url).database
    if not database or database == ":memory:":
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(database + suffix).unlink(missing_ok=True)


def demo_end() -> datetime:
    """The end of the demo's year: the start of today in Tokyo (the same all day, per seed)."""
    today = utcnow().astimezone(TOKYO).date()
    return datetime.combine(today, time(), TOKYO)


def _build(database: Database, members: int, seed: int) -> DemoSummary:
    end = demo_end()
    with console.status("1年分の会員と購買を計画中…"):
        events = plan_events(members=members, seed=seed, end=end)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("記録中", total=len(events))

        def advance(done: int, total: int, event: Event) -> None:
            if done % 50 == 0 or done == total:
                month = event.at.astimezone(TOKYO)
                progress.update(
                    task,
                    completed=done,
                    description=f"記録中 {month:%Y年%m月}",
                )

        return build_demo(database, events=events, end=end, progress=advance)


def _print_summary(summary: DemoSummary) -> None:
    start, end = summary.start.astimezone(TOKYO), summary.end.astimezone(TOKYO)
    table = Table(title="デモプログラム きずなポイント", show_header=False)
    table.add_column("項目")
    table.add_column("値", justify="right")
    rows = (
        ("期間", f"{start:%Y-%m-%d} 〜 {end:%Y-%m-%d}"),
        ("店舗（EC含む）", f"{summary.stores:,}"),
        ("会員", f"{summary.members:,}"),
        ("購買（レシート）", f"{summary.purchases:,}"),
        ("うちEC注文", f"{summary.ec_orders:,}"),
        ("返品・キャンセル", f"{summary.returns:,}"),
        ("付与ポイント", f"{summary.points_earned:,}"),
        ("利用ポイント", f"{summary.points_redeemed:,}"),
        ("失効ポイント", f"{summary.points_expired:,}（{summary.expired_lots:,} ロット）"),
        ("仮ポイント（出荷・返品期間待ち）", f"{summary.pending_points:,}"),
    )
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)


def demo(
    members: int = typer.Option(2000, "--members", min=1, help="How many members to create."),
    seed: int = typer.Option(42, "--seed", help="Random seed: the same seed builds the same demo."),
    database_url: str = typer.Option(
        DEFAULT_URL, "--database-url", help="Where to build it (an empty database)."
    ),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve it when built."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on."),
    port: int = typer.Option(8000, "--port", help="Port to serve on."),
) -> None:
    """Build a year of a realistic programme through the services, reconcile it, and serve it."""
    if database_url.startswith("sqlite"):
        _fresh_sqlite(database_url)
    with console.status("スキーマを作成中…"):
        upgrade(database_url)
    database = Database(database_url)
    if demo_exists(database):
        console.print(
            "[red]このデータベースには既にデモがあります[/red]: 空のデータベースを指定してください"
            "（SQLite の既定ファイルは毎回作り直されます）。"
        )
        raise typer.Exit(2)
    summary = _build(database, members, seed)
    _print_summary(summary)
    balanced = _reconcile(database)
    if not serve:
        database.dispose()
        if not balanced:
            raise typer.Exit(1)
        return
    accounts = create_demo_staff(database, as_of=utcnow())
    database.dispose()
    _serve(database_url, host, port, accounts)


def _reconcile(database: Database) -> bool:
    """Run the ledger's reconciliation over every member; print and return whether it held."""
    with console.status("帳簿を照合中（kizuna reconcile）…"), database.read() as session:
        violations = check(session)
    if not violations:
        console.print("[green]照合OK[/green]: すべての会員で残高・仕訳・ロットが一致しています")
        return True
    table = Table(title=f"照合エラー {len(violations):,} 件", style="red")
    for column in ("会員", "不変条件", "内容"):
        table.add_column(column)
    for violation in violations[:30]:
        table.add_row(str(violation.member_id), str(violation.invariant), violation.detail)
    console.print(table)
    return False


def _serve(database_url: str, host: str, port: int, accounts: list[tuple[str, str, str]]) -> None:
    app = create_app(Settings(database_url=database_url, log_json=False))
    base = f"http://{host}:{port}"
    table = Table(title="デモ用スタッフアカウント（この実行のみ有効なパスワード）")
    for column in ("ユーザー名", "パスワード", "ロール"):
        table.add_column(column)
    for username, password, role in accounts:
        table.add_row(username, password, role)
    console.print(table)
    console.print(f"管理コンソール: [link={base}{CONSOLE}]{base}{CONSOLE}[/link]")
    console.print(f"API ドキュメント: [link={base}/docs]{base}/docs[/link]")
    console.print("Ctrl+C で終了します。")
    uvicorn.run(app, host=host, port=port, log_level="warning")
