"""The demo's fixed cast: a coalition of Japanese retail partners, their stores and what they sell.

A partner has a store format (supermarket, drugstore, bookshop café, EC); the format decides which
product categories a basket is drawn from. Tobacco and gift cards are sold but earn no points, as
in most Japanese programmes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PartnerSpec:
    code: str
    name: str
    store_format: str
    is_operator: bool = False


@dataclass(frozen=True)
class StoreSpec:
    code: str
    partner_code: str
    name: str
    prefecture: str | None
    # Relative footfall: how likely a member near this store is to have it as their home store.
    weight: int = 10


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price: int


PROGRAM_CODE = "KIZUNA"
PROGRAM_NAME = "きずなポイント"
EXCLUDED_CATEGORIES = frozenset({"tobacco", "gift_card"})
EC_STORE = "EC"

PARTNERS = (
    PartnerSpec("KIZUNA-HD", "きずなホールディングス株式会社", "ec", is_operator=True),
    PartnerSpec("MART", "きずなマート株式会社", "supermarket"),
    PartnerSpec("SAKURA", "さくらドラッグ株式会社", "drugstore"),
    PartnerSpec("HINATA", "ひなた書店カフェ株式会社", "bookcafe"),
)

STORES = (
    StoreSpec(EC_STORE, "KIZUNA-HD", "きずなオンラインストア", None, weight=0),
    StoreSpec("M001", "MART", "きずなマート 新宿西口店", "東京都", 16),
    StoreSpec("M002", "MART", "きずなマート 世田谷桜新町店", "東京都", 12),
    StoreSpec("M003", "MART", "きずなマート 横浜みなとみらい店", "神奈川県", 12),
    StoreSpec("M004", "MART", "きずなマート 大宮駅前店", "埼玉県", 9),
    StoreSpec("M005", "MART", "きずなマート 船橋本町店", "千葉県", 8),
    StoreSpec("M006", "MART", "きずなマート 梅田茶屋町店", "大阪府", 12),
    StoreSpec("S001", "SAKURA", "さくらドラッグ 渋谷道玄坂店", "東京都", 10),
    StoreSpec("S002", "SAKURA", "さくらドラッグ 名古屋栄店", "愛知県", 9),
    StoreSpec("S003", "SAKURA", "さくらドラッグ 福岡天神店", "福岡県", 8),
    StoreSpec("S004", "SAKURA", "さくらドラッグ 札幌大通店", "北海道", 7),
    StoreSpec("H001", "HINATA", "ひなた書店カフェ 京都四条店", "京都府", 6),
    StoreSpec("H002", "HINATA", "ひなた書店カフェ 仙台一番町店", "宮城県", 5),
)

PRODUCTS = (
    Product("F0001", "おにぎり 鮭", "food", 160),
    Product("F0002", "食パン 6枚切", "food", 198),
    Product("F0003", "国産豚こま切れ 300g", "food", 548),
    Product("F0004", "鶏もも肉 2枚", "food", 698),
    Product("F0005", "刺身盛り合わせ", "food", 1280),
    Product("F0006", "カット野菜サラダ", "food", 128),
    Product("F0007", "納豆 3パック", "food", 98),
    Product("F0008", "木綿豆腐", "food", 78),
    Product("F0009", "幕の内弁当", "food", 598),
    Product("F0010", "新潟県産コシヒカリ 5kg", "food", 2480),
    Product("F0011", "銘菓詰め合わせ（ギフト）", "food", 3240),
    Product("D0001", "緑茶 2L", "beverage", 178),
    Product("D0002", "ミネラルウォーター 500ml", "beverage", 88),
    Product("D0003", "缶コーヒー", "beverage", 130),
    Product("D0004", "ビール 350ml 6缶", "beverage", 1280),
    Product("D0005", "カフェラテ（店内）", "beverage", 450),
    Product("G0001", "ティッシュペーパー 5箱", "daily_goods", 328),
    Product("G0002", "洗濯用洗剤 詰替", "daily_goods", 398),
    Product("G0003", "トイレットペーパー 12ロール", "daily_goods", 458),
    Product("G0004", "食器用洗剤", "daily_goods", 198),
    Product("G0005", "ゴミ袋 45L", "daily_goods", 248),
    Product("C0001", "化粧水 200ml", "cosmetics", 1650),
    Product("C0002", "日焼け止め", "cosmetics", 1280),
    Product("C0003", "リップクリーム", "cosmetics", 550),
    Product("C0004", "シャンプー 詰替", "cosmetics", 798),
    Product("C0005", "美容液", "cosmetics", 4400),
    Product("P0001", "かぜ薬", "medicine", 1580),
    Product("P0002", "目薬", "medicine", 698),
    Product("P0003", "ビタミン剤", "medicine", 1298),
    Product("P0004", "絆創膏", "medicine", 398),
    Product("B0001", "文庫本", "books", 880),
    Product("B0002", "ビジネス書", "books", 1760),
    Product("B0003", "料理雑誌", "books", 990),
    Product("B0004", "絵本", "books", 1430),
    Product("T0001", "たばこ", "tobacco", 600),
    Product("X0001", "ギフトカード 3,000円", "gift_card", 3000),
    Product("X0002", "ギフトカード 5,000円", "gift_card", 5000),
)

# Category mix of a basket by store format (weights).
FORMAT_MIX: dict[str, dict[str, int]] = {
    "supermarket": {"food": 60, "beverage": 22, "daily_goods": 12, "tobacco": 4, "gift_card": 1},
    "drugstore": {
        "cosmetics": 30,
        "medicine": 22,
        "daily_goods": 26,
        "beverage": 10,
        "food": 8,
        "tobacco": 3,
        "gift_card": 1,
    },
    "bookcafe": {"books": 62, "beverage": 30, "food": 8},
    "ec": {"food": 20, "daily_goods": 25, "cosmetics": 25, "books": 18, "gift_card": 4},
}

# Lines per basket by store format: (minimum, maximum).
BASKET_SIZE: dict[str, tuple[int, int]] = {
    "supermarket": (2, 9),
    "drugstore": (1, 5),
    "bookcafe": (1, 3),
    "ec": (1, 4),
}


def partner_of(store: StoreSpec) -> PartnerSpec:
    """The partner a store belongs to."""
    return next(partner for partner in PARTNERS if partner.code == store.partner_code)


def products_by_category() -> dict[str, list[Product]]:
    """The products of each category."""
    grouped: dict[str, list[Product]] = {}
    for product in PRODUCTS:
        grouped.setdefault(product.category, []).append(product)
    return grouped
