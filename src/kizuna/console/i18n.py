"""The console's words in Japanese (the default) and English: one small message catalogue.

Templates call `t("key")`; a key missing from the catalogue shows as itself, and a test checks
that every key the templates use is here in both languages.
"""

from __future__ import annotations

from typing import Any

LANGUAGES = ("ja", "en")

MESSAGES: dict[str, tuple[str, str]] = {
    # frame
    "app.title": ("Kizuna 管理コンソール", "Kizuna console"),
    "nav.dashboard": ("ダッシュボード", "Dashboard"),
    "nav.members": ("会員検索", "Members"),
    "nav.adjustments": ("ポイント調整", "Adjustments"),
    "nav.merge": ("名寄せ", "Merge"),
    "nav.campaigns": ("キャンペーン", "Campaigns"),
    "nav.clients": ("API連携", "API clients"),
    "nav.staff": ("スタッフ", "Staff"),
    "nav.audit": ("監査ログ", "Audit log"),
    "nav.account": ("アカウント", "Account"),
    "nav.logout": ("ログアウト", "Log out"),
    "nav.menu": ("メニュー", "Menu"),
    "lang.switch": ("English", "日本語"),
    "common.save": ("保存", "Save"),
    "common.cancel": ("キャンセル", "Cancel"),
    "common.search": ("検索", "Search"),
    "common.back": ("戻る", "Back"),
    "common.none": ("ありません", "None"),
    "common.yes": ("はい", "Yes"),
    "common.no": ("いいえ", "No"),
    "common.points": ("ポイント", "points"),
    "common.pt": ("pt", "pt"),
    "common.yen": ("円", "yen"),
    "common.filter": ("絞り込み", "Filter"),
    "common.next_page": ("次へ", "Next"),
    "common.status": ("状態", "Status"),
    "common.actions": ("操作", "Actions"),
    "common.not_available": (
        "この機能はまだ利用できません(担当モジュールの準備中)。",
        "Not available yet: the module behind it has not landed.",
    ),
    # errors
    "error.forbidden.title": ("権限がありません", "Not allowed"),
    "error.forbidden.body": (
        "この操作を行う権限がありません。管理者に連絡してください。",
        "Your role does not allow this. Ask an administrator.",
    ),
    "error.csrf.title": ("リクエストを受け付けられません", "Request refused"),
    "error.csrf.body": (
        "フォームの有効期限が切れたか、別のサイトから送信されました。ページを開き直してください。",
        "The form expired or was sent from another site. Reload the page and try again.",
    ),
    # log-in
    "login.title": ("ログイン", "Log in"),
    "login.username": ("ユーザー名", "User name"),
    "login.password": ("パスワード", "Password"),
    "login.submit": ("ログイン", "Log in"),
    "login.invalid": (
        "ユーザー名またはパスワードが正しくありません。",
        "Wrong user name or password.",
    ),
    "login.locked": (
        "ログインの失敗が続いたため、アカウントを一時的にロックしました。15分後に再度お試しいただくか、管理者に解除を依頼してください。",
        "Too many failed attempts: the account is locked for 15 minutes "
        "or until an administrator unlocks it.",
    ),
    "login.totp.title": ("確認コード", "Verification code"),
    "login.totp.help": (
        "認証アプリに表示されている6桁のコードを入力してください。",
        "Enter the 6-digit code from your authenticator app.",
    ),
    "login.totp.code": ("確認コード", "Code"),
    "login.totp.invalid": ("コードが正しくありません。", "Wrong code."),
    "login.expired": (
        "セッションの有効期限が切れました。もう一度ログインしてください。",
        "Your session ended. Please log in again.",
    ),
    # account
    "account.title": ("アカウント設定", "Account"),
    "account.password.title": ("パスワード変更", "Change password"),
    "account.password.must": (
        "管理者がパスワードをリセットしました。新しいパスワードを設定してください。",
        "An administrator reset your password. Choose a new one to continue.",
    ),
    "account.password.current": ("現在のパスワード", "Current password"),
    "account.password.new": ("新しいパスワード(12文字以上)", "New password (12+ characters)"),
    "account.password.changed": ("パスワードを変更しました。", "Password changed."),
    "account.totp.title": ("2段階認証 (TOTP)", "Two-step verification (TOTP)"),
    "account.totp.on": ("2段階認証は有効です。", "Two-step verification is on."),
    "account.totp.off": (
        "認証アプリにこのキーを登録し、表示されたコードを入力してください。",
        "Add this key to your authenticator app, then enter the code it shows.",
    ),
    "account.totp.key": ("セットアップキー", "Setup key"),
    "account.totp.enable": ("有効にする", "Turn on"),
    "account.totp.enabled": ("2段階認証を有効にしました。", "Two-step verification is on."),
    "account.role": ("ロール", "Role"),
    "password_too_short": (
        "パスワードは12文字以上にしてください。",
        "Use at least 12 characters.",
    ),
    "password_contains_username": (
        "パスワードにユーザー名を含めないでください。",
        "The password must not contain the user name.",
    ),
    "wrong_password": ("現在のパスワードが違います。", "The current password is wrong."),
    "invalid_totp": ("コードが正しくありません。", "Wrong code."),
    # roles
    "role.owner": ("オーナー", "Owner"),
    "role.admin": ("管理者", "Administrator"),
    "role.marketer": ("マーケティング", "Marketer"),
    "role.store_staff": ("店舗スタッフ", "Store staff"),
    "role.support": ("サポート", "Support"),
    "role.auditor": ("監査担当", "Auditor"),
    "role.partner_manager": ("パートナー管理者", "Partner manager"),
    # dashboard
    "dash.title": ("ダッシュボード", "Dashboard"),
    "dash.month": ("対象月", "Month"),
    "dash.members_total": ("会員数", "Members"),
    "dash.members_new": ("今月の新規会員", "New this month"),
    "dash.members_active": ("今月のアクティブ会員", "Active this month"),
    "dash.issued": ("付与ポイント", "Points issued"),
    "dash.redeemed": ("利用ポイント", "Points redeemed"),
    "dash.expired": ("失効ポイント", "Points expired"),
    "dash.outstanding": ("未使用ポイント残高", "Outstanding points"),
    "dash.outstanding_yen": ("負債額(円換算)", "Liability (yen)"),
    "dash.daily_points": ("日別ポイント推移", "Points by day"),
    "dash.daily_members": ("日別新規会員", "New members by day"),
    "dash.new_members": ("新規会員", "New members"),
    "dash.breakage": ("失効率", "Breakage rate"),
    # errors of services, by code
    "error.not_found.title": ("見つかりません", "Not found"),
    "error.not_found.body": (
        "該当するデータがないか、閲覧する権限がありません。",
        "It does not exist, or you may not see it.",
    ),
    "error.refused.title": ("処理できませんでした", "Could not be done"),
    "code.card_blocked": ("このカードは停止されています。", "This card is blocked."),
    "code.card_not_found": ("カードが見つかりません。", "No such card."),
    "code.member_not_active": ("この会員は有効ではありません。", "This member is not active."),
    "code.insufficient_points": ("ポイント残高が不足しています。", "Not enough points."),
    # members
    "members.title": ("会員検索", "Find a member"),
    "members.query": ("検索", "Search"),
    "members.placeholder": (
        "カード番号・電話番号・メール・カナ氏名・会員番号",
        "Card, phone, e-mail, name in kana, or member number",
    ),
    "members.kind": ("種類", "Kind"),
    "members.kind.auto": ("自動判定", "Detect"),
    "members.kind.card": ("カード番号", "Card"),
    "members.kind.phone": ("電話番号", "Phone"),
    "members.kind.email": ("メール", "E-mail"),
    "members.kind.kana": ("カナ氏名", "Name (kana)"),
    "members.kind.member_id": ("会員番号", "Member number"),
    "members.id": ("会員番号", "Member"),
    "members.joined": ("入会日", "Joined"),
    "members.open": ("開く", "Open"),
    "members.none": (
        "該当する会員が見つかりません(閲覧範囲外の会員は表示されません)。",
        "No member found (members outside your scope are not shown).",
    ),
    "status.active": ("有効", "Active"),
    "status.suspended": ("停止中", "Suspended"),
    "status.merged": ("統合済み", "Merged"),
    "status.withdrawn": ("退会", "Withdrawn"),
    "member.title": ("会員 #{id}", "Member #{id}"),
    "member.masked": (
        "個人情報は権限に応じてマスクして表示しています。",
        "Personal data is masked for your role.",
    ),
    "member.adjust": ("ポイント調整", "Adjust points"),
    "member.balance": ("ポイント残高", "Balance"),
    "member.pending": ("仮ポイント", "Pending"),
    "member.limited": ("うち期間限定", "of which limited"),
    "member.debt": ("未回収ポイント", "Debt"),
    "member.value": ("円換算", "Value"),
    "member.next_expiring": ("失効予定", "Expiring next"),
    "member.expires_on": ("{day} に {points} pt 失効", "{points} pt expire on {day}"),
    "member.profile": ("プロフィール", "Profile"),
    "member.cards": ("カード", "Cards"),
    "member.lots": ("ポイント明細(ロット)", "Lots"),
    "member.history": ("ポイント履歴", "History"),
    "profile.name_kanji": ("氏名", "Name"),
    "profile.name_kana": ("フリガナ", "Name (kana)"),
    "profile.birth_date": ("生年月日", "Birth date"),
    "profile.gender": ("性別", "Gender"),
    "profile.postal_code": ("郵便番号", "Postal code"),
    "profile.address": ("住所", "Address"),
    "profile.phone": ("電話番号", "Phone"),
    "profile.email": ("メール", "E-mail"),
    "cards.status.issued": ("未有効化", "Issued"),
    "cards.status.active": ("利用中", "Active"),
    "cards.status.blocked": ("停止", "Blocked"),
    "cards.reason": ("理由", "Reason"),
    "cards.reason.lost": ("紛失", "Lost"),
    "cards.reason.stolen": ("盗難", "Stolen"),
    "cards.reason.damaged": ("破損", "Damaged"),
    "cards.reason.reissued": ("再発行済み", "Reissued"),
    "cards.reason.withdrawn": ("退会", "Withdrawn"),
    "cards.reissue": ("停止して再発行", "Block and reissue"),
    "cards.confirm": (
        "このカードを停止し、新しいカードを発行します。よろしいですか?",
        "Block this card and issue a new one?",
    ),
    "cards.reissued.title": ("カードを再発行しました", "Card reissued"),
    "cards.reissued.body": (
        "旧カードを停止しました(理由: {reason})。ポイント残高はそのまま引き継がれます。",
        "The old card is blocked ({reason}). The balance stays with the member.",
    ),
    "cards.reissued.number": ("新しいカード番号", "New card number"),
    "cards.reissued.once": (
        "この番号が全桁表示されるのはこの画面だけです。",
        "This is the only time the full number is shown.",
    ),
    "cards.reissued.back": ("会員ページへ戻る", "Back to the member"),
    "lot.kind": ("種類", "Kind"),
    "lot.kind.standard": ("通常", "Standard"),
    "lot.kind.limited": ("期間限定", "Limited"),
    "lot.remaining": ("残り", "Left"),
    "lot.amount": ("付与", "Earned"),
    "lot.earned": ("付与日", "Earned on"),
    "lot.available": ("利用可能日", "Usable from"),
    "lot.expires": ("有効期限", "Expires"),
    "entry.occurred": ("日時", "When"),
    "entry.type": ("種別", "Type"),
    "entry.amount": ("ポイント", "Points"),
    "entry.where": ("レシート・チャネル", "Receipt / channel"),
    "entry.reason": ("理由", "Reason"),
    "entry.actor": ("実行者", "By"),
    "entry.type.earn": ("付与", "Earn"),
    "entry.type.redeem": ("利用", "Redeem"),
    "entry.type.expire": ("失効", "Expire"),
    "entry.type.adjust": ("調整", "Adjustment"),
    "entry.type.cancel": ("取消", "Cancel"),
    "entry.type.migrate_in": ("移行", "Migrated in"),
    "entry.type.merge_in": ("統合(受入)", "Merged in"),
    "entry.type.merge_out": ("統合(移出)", "Merged out"),
    "entry.type.forfeit": ("没収", "Forfeit"),
}


def translate(key: str, lang: str, **values: Any) -> str:
    """The message `key` in `lang` with `{name}` placeholders filled; the key itself if unknown."""
    pair = MESSAGES.get(key)
    if pair is None:
        # A service's error code without a translation still reads better than "code.xxx".
        return key.removeprefix("code.")
    text = pair[1] if lang == "en" else pair[0]
    return text.format(**values) if values else text
