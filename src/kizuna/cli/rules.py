"""`kizuna rules …`: campaigns (check, create, edit, activate, end, simulate) and ranks.

Definitions come as JSON files in the shape of the API's campaign definition; dates on the command
line are calendar days in the programme's time zone.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from kizuna.cli.context import database
from kizuna.core.clock import utcnow
from kizuna.core.errors import KizunaError
from kizuna.partners.models import Program
from kizuna.rules import manage
from kizuna.rules.campaigns import CampaignDefinition
from kizuna.rules.conditions import parse
from kizuna.rules.sql import local_midnight
from kizuna.tiers import evaluation
from kizuna.tiers import service as tiers
from kizuna.tiers.domain import Metric, Window

app = typer.Typer(help="付与ルール・キャンペーン・会員ランク", no_args_is_help=True)
console = Console()


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as bad:
        console.print(f"[red]JSON として読めません: {bad}[/red]")
        raise typer.Exit(2) from None


def _program(code: str | None) -> Program:
    with database().read() as session:
        query = select(Program)
        if code is not None:
            query = query.where(Program.code == code)
        found = session.scalars(query.limit(2)).all()
    if len(found) != 1:
        console.print("[red]--program CODE でプログラムを指定してください[/red]")
        raise typer.Exit(2)
    return found[0]


def _fail(error: KizunaError) -> None:
    console.print(f"[red]{error.code}[/red]: {error.message}")
    raise typer.Exit(1)


def _show(view: manage.CampaignView) -> None:
    d = view.definition
    console.print(
        f"[bold]#{view.campaign.id} {view.campaign.code}[/bold] {d.name} "
        f"状態={view.campaign.status} 版={view.current.version} "
        f"期間={d.starts_at.isoformat()} 〜 {d.ends_at.isoformat()} "
        f"予算使用={view.campaign.budget_used}" + (f"/{d.budget}" if d.budget is not None else "")
    )


@app.command("check")
def check(file: Path = typer.Argument(..., exists=True, dir_okay=False)) -> None:
    """Validate a campaign definition (or a bare condition) file."""
    data = _load(file)
    try:
        if isinstance(data, dict) and "action" in data:
            CampaignDefinition.from_dict(data)
        else:
            parse(data)
    except KizunaError as bad:
        _fail(bad)
    console.print("[green]OK[/green]")


@app.command("list")
def list_(
    program: str | None = typer.Option(None, help="プログラムコード"),
    status: str | None = typer.Option(None, help="draft / active / ended"),
) -> None:
    """List the campaigns of a programme."""
    program_id = _program(program).id
    with database().read() as session:
        views = manage.list_campaigns(session, program_id=program_id, status=status)
        table = Table("ID", "コード", "名称", "状態", "版", "開始", "終了", "予算使用")
        for view in views:
            d = view.definition
            table.add_row(
                str(view.campaign.id),
                view.campaign.code,
                d.name,
                view.campaign.status,
                str(view.current.version),
                d.starts_at.isoformat(),
                d.ends_at.isoformat(),
                f"{view.campaign.budget_used}" + (f"/{d.budget}" if d.budget else ""),
            )
    console.print(table)


@app.command("create")
def create(
    file: Path = typer.Argument(..., exists=True, dir_okay=False),
    code: str = typer.Option(..., help="キャンペーンコード"),
    program: str | None = typer.Option(None, help="プログラムコード"),
    activate: bool = typer.Option(False, help="作成と同時に有効化する"),
) -> None:
    """Create a draft campaign from a JSON definition (optionally activate it)."""
    program_id = _program(program).id
    now = utcnow()
    try:
        with database().write() as session:
            view = manage.create_campaign(
                session,
                program_id=program_id,
                code=code,
                definition=_load(file),
                as_of=now,
                actor="cli",
            )
            if activate:
                view = manage.activate_campaign(session, campaign_id=view.campaign.id, as_of=now)
            _show(view)
    except KizunaError as bad:
        _fail(bad)


@app.command("update")
def update(
    campaign_id: int = typer.Argument(...),
    file: Path = typer.Argument(..., exists=True, dir_okay=False),
) -> None:
    """Edit a campaign (an active one gets a new version in force from now)."""
    try:
        with database().write() as session:
            _show(
                manage.update_campaign(
                    session,
                    campaign_id=campaign_id,
                    definition=_load(file),
                    as_of=utcnow(),
                    actor="cli",
                )
            )
    except KizunaError as bad:
        _fail(bad)


@app.command("activate")
def activate(campaign_id: int = typer.Argument(...)) -> None:
    """Put a draft campaign in force from now."""
    try:
        with database().write() as session:
            _show(manage.activate_campaign(session, campaign_id=campaign_id, as_of=utcnow()))
    except KizunaError as bad:
        _fail(bad)


@app.command("end")
def end(campaign_id: int = typer.Argument(...)) -> None:
    """Take an active campaign out of force from now."""
    try:
        with database().write() as session:
            _show(manage.end_campaign(session, campaign_id=campaign_id, as_of=utcnow()))
    except KizunaError as bad:
        _fail(bad)


@app.command("simulate")
def simulate(
    since: str = typer.Option(..., "--from", help="開始日 (YYYY-MM-DD, プログラムの時間帯)"),
    until: str = typer.Option(..., "--to", help="終了日 (この日を含まない)"),
    campaign_id: int | None = typer.Option(None, "--campaign", help="既存キャンペーンの現行版"),
    file: Path | None = typer.Option(None, "--file", exists=True, dir_okay=False),
    program: str | None = typer.Option(None, help="プログラムコード"),
) -> None:
    """Replay past purchases with a draft campaign: cost and members reached; writes nothing."""
    chosen = _program(program)
    with database().read() as session:
        try:
            if file is not None:
                definition = _load(file)
            elif campaign_id is not None:
                definition = manage.get_campaign(session, campaign_id).current.definition
            else:
                console.print("[red]--campaign か --file を指定してください[/red]")
                raise typer.Exit(2)
            tz = ZoneInfo(chosen.timezone)
            result = manage.simulate(
                session,
                program_id=chosen.id,
                definition=definition,
                start=local_midnight(date.fromisoformat(since), tz),
                end=local_midnight(date.fromisoformat(until), tz),
            )
        except KizunaError as bad:
            _fail(bad)
            return
    table = Table("項目", "値", title="キャンペーン試算 (書き込みなし)")
    table.add_row("対象購買数", f"{result.purchases:,}")
    table.add_row("付与対象購買数", f"{result.purchases_awarded:,}")
    table.add_row("到達会員数", f"{result.members_reached:,}")
    table.add_row("付与ポイント (原資)", f"{result.points:,}")
    table.add_row("上限・予算で抑えたポイント", f"{result.points_over_limits:,}")
    console.print(table)


@app.command("ranks")
def ranks(
    file: Path = typer.Argument(..., exists=True, dir_okay=False),
    program: str | None = typer.Option(None, help="プログラムコード"),
) -> None:
    """Configure ranks from JSON: metric, window, fiscal_year_start_month and tiers."""
    data = _load(file)
    program_id = _program(program).id
    try:
        with database().write() as session:
            rules = tiers.configure(
                session,
                program_id=program_id,
                metric=Metric(data.get("metric", "spend")),
                window=Window(data.get("window", "calendar_year")),
                fiscal_year_start_month=int(data.get("fiscal_year_start_month", 4)),
                tiers=[tiers.TierInput(**tier) for tier in data["tiers"]],
            )
    except KizunaError as bad:
        _fail(bad)
        return
    for tier in rules.tiers:
        pct = tier.earn_multiplier_pct
        console.print(f"{tier.level}: {tier.code} {tier.name} ≥{tier.threshold:,} ×{pct}%")


@app.command("evaluate-ranks")
def evaluate_ranks(
    program: str | None = typer.Option(None, help="プログラムコード (指定時は期日を待たず評価)"),
) -> None:
    """Run the rank evaluation: every programme that is due, or one programme now."""
    now = utcnow()
    with database().write() as session:
        if program is None:
            changed = evaluation.evaluate_due(session, as_of=now)
        else:
            changed = evaluation.evaluate_ranks(session, program_id=_program(program).id, as_of=now)
    console.print(f"ランク変更: {changed:,} 名")
