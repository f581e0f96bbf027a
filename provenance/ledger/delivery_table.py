"""Webhook deliveries the service has accepted, kept for the signature window so that a replay
is refused (``mlflow.replayed``).

The table lives in the ledger database (migration ``0006``), so every replica of the service
sees the same deliveries, but it is not part of the signed log: a cache of delivery ids and the
signed timestamps they came with. A row is useless once its timestamp is older than the window
(a replay of it is refused by its timestamp alone), so rows that old are deleted as new ones
arrive; deleting a row by hand only reopens a replay for what is left of that window.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_deliveries"

    source: str = Field(primary_key=True, max_length=40)  # who delivered: "mlflow"
    delivery_id: str = Field(primary_key=True, max_length=200)  # X-MLflow-Delivery-Id
    sent_at: int = Field(sa_column=Column(BigInteger, nullable=False))  # the signed timestamp
    received_at: datetime
