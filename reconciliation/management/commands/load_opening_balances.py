import csv
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from reconciliation.services import OpeningBalance, set_opening_balances

FIELDS = ("account", "currency", "amount")
# Ledger amounts are numeric(20, 2).
MAX_AMOUNT = Decimal(10) ** 18


class Command(BaseCommand):
    help = ("Set ledger opening balances from a CSV file with the header account,currency,amount, or a JSON "
            "list of objects with those keys. Amounts are decimal strings, zero or more. Loading the same file "
            "again changes nothing; a changed opening balance moves the account balance by the difference. "
            "All rows load in one transaction, or none do.")

    def add_arguments(self, parser):
        parser.add_argument("path", help="CSV or JSON file (chosen by the .json extension).")

    def handle(self, *args, path, **options):
        file = Path(path)
        if not file.is_file():
            raise CommandError(f"File {path} not found.")
        try:
            records = read_json(file) if file.suffix.lower() == ".json" else read_csv(file)
            rows = [parse_row(record, number) for number, record in enumerate(records, start=1)]
            changed = set_opening_balances(rows, source=f"load_opening_balances {file.name}")
        except (ValueError, UnicodeDecodeError) as error:
            raise CommandError(f"{path}: {error}; nothing was loaded.") from error
        self.stdout.write(f"{len(rows)} opening balances read from {path}, {changed} changed.")


def read_csv(file: Path) -> list[dict]:
    with file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in FIELDS if name not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"CSV header is missing {', '.join(missing)} (expected {','.join(FIELDS)})")
        return list(reader)


def read_json(file: Path) -> list[dict]:
    data = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ValueError("JSON must be a list of objects with account, currency and amount")
    return data


def parse_row(record: dict, number: int) -> OpeningBalance:
    account = str(record.get("account") or "").strip()
    currency = str(record.get("currency") or "").strip().upper()
    raw_amount = "" if record.get("amount") is None else str(record["amount"]).strip()
    if not account or len(account) > 64:
        raise ValueError(f"row {number}: account is missing or longer than 64 characters")
    if len(currency) != 3 or not currency.isalpha():
        raise ValueError(f"row {number}: currency {currency!r} is not a three-letter ISO 4217 code")
    try:
        amount = Decimal(raw_amount)
    except InvalidOperation:
        raise ValueError(f"row {number}: amount {raw_amount!r} is not a decimal number") from None
    if not amount.is_finite() or amount < 0 or amount >= MAX_AMOUNT or amount.as_tuple().exponent < -2:
        raise ValueError(f"row {number}: amount {raw_amount!r} must be zero or more, below {MAX_AMOUNT:,}, "
                         "with at most 2 decimals")
    return OpeningBalance(identifier=account, currency=currency, amount=amount)
