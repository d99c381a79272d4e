"""Imports every area's tables so that the metadata is complete (migrations, schema checks)."""

from kizuna.activity import models as activity_models
from kizuna.batches import models as batches_models
from kizuna.clients import models as clients_models
from kizuna.db import idempotency
from kizuna.db.base import Base
from kizuna.ledger import models as ledger_models
from kizuna.members import models as members_models
from kizuna.outbox import models as outbox_models
from kizuna.partners import models as partners_models
from kizuna.purchases import models as purchases_models
from kizuna.rules import models as rules_models
from kizuna.security import models as security_models
from kizuna.tiers import models as tiers_models
from kizuna.webhooks import models as webhooks_models

AREAS = (
    partners_models,
    members_models,
    ledger_models,
    purchases_models,
    idempotency,
    outbox_models,
    security_models,
    clients_models,
    webhooks_models,
    activity_models,
    batches_models,
    rules_models,
    tiers_models,
)
metadata = Base.metadata
