"""The ``parcelhook`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from config import Settings, load_or_exit


def _services(settings: Settings) -> Any:
    from admin.services import Services

    return Services.from_settings(settings)


def cmd_migrate(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from config import SettingsError
    from store.migrate import upgrade

    try:  # the key is needed only to convert existing merchants' secrets (migration 0004)
        upgrade(settings.database_url, vault=settings.vault if settings.encryption_keys else None)
    except SettingsError as exc:
        print(f"parcelhook: configuration error: {exc}", file=sys.stderr)
        return 2
    print(f"database at {_safe_url(settings.database_url)} is up to date", file=out)
    return 0


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def cmd_merchants_create(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from admin.validation import SLUG, Invalid, validate_merchant
    from store import merchants as merchant_store
    from store.database import Database
    from store.errors import Conflict

    if not SLUG.fullmatch(args.slug):
        print(f"parcelhook: slug {args.slug!r} must be lowercase letters, digits and dashes", file=sys.stderr)
        return 2
    fields: dict[str, Any] = {"name": args.name}
    for key in ("email_from", "sms_from", "alert_email", "default_locale", "timezone"):
        if getattr(args, key, None):
            fields[key] = getattr(args, key)
    if args.hmac_secret:
        fields["hmac_secrets"] = [args.hmac_secret]
    if getattr(args, "shippo_api_token", None):
        fields["shippo_api_token"] = args.shippo_api_token
    try:
        body = validate_merchant(fields)
    except Invalid as exc:
        for key, problem in exc.fields.items():
            print(f"parcelhook: --{key.replace('_', '-')}: {problem}", file=sys.stderr)
        return 2
    db = Database(settings.database_url)
    secrets = body.pop("hmac_secrets", None)
    shippo_token = body.pop("shippo_api_token", merchant_store.KEEP)
    name = body.pop("name")
    try:
        with db.write() as conn:
            merchant, _ = merchant_store.upsert(
                conn,
                args.slug,
                vault=settings.vault,
                name=name,
                profile=body,
                hmac_secrets=secrets,
                shippo_api_token=shippo_token,
                create_only=not args.update,
            )
    except Conflict as exc:
        print(f"parcelhook: {exc} (use --update to change it)", file=sys.stderr)
        return 1
    print(
        f"merchant {merchant.slug} ready. Paste this webhook URL into Shippo (Settings → Webhooks):", file=out
    )
    print(merchant.webhook_url(settings.public_url), file=out)
    if merchant.hmac_secret_count:
        print("HMAC signatures are required (Shippo-Auth-Signature).", file=out)
    return 0


def cmd_merchants_list(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from store import merchants as merchant_store
    from store.database import Database

    with Database(settings.database_url).read() as conn:
        found = merchant_store.list_all(conn, settings.vault)
    if args.json:
        print(json.dumps([m.to_public(settings.public_url) for m in found], indent=2), file=out)
        return 0
    print(f"{'SLUG':<24} {'NAME':<32} HMAC", file=out)
    for m in found:
        print(f"{m.slug:<24} {m.name[:32]:<32} {'yes' if m.hmac_secret_count else 'no'}", file=out)
    return 0


def cmd_merchants_show(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from store import merchants as merchant_store
    from store.database import Database

    with Database(settings.database_url).read() as conn:
        merchant = merchant_store.get(conn, args.slug, settings.vault)
    if merchant is None:
        print(f"parcelhook: no merchant {args.slug!r}", file=sys.stderr)
        return 1
    print(json.dumps(merchant.to_public(settings.public_url), indent=2), file=out)
    return 0


def cmd_merchants_rotate(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from store import merchants as merchant_store
    from store.database import Database
    from store.errors import NotFound

    try:
        with Database(settings.database_url).write() as conn:
            merchant = merchant_store.rotate_token(conn, args.slug, vault=settings.vault)
    except NotFound as exc:
        print(f"parcelhook: {exc}", file=sys.stderr)
        return 1
    print("new webhook URL (the old token keeps working for 24 hours):", file=out)
    print(merchant.webhook_url(settings.public_url), file=out)
    return 0


def _shippo_services(settings: Settings) -> Any:
    """Services with the actors bound to the broker: a refresh or a 401 alert enqueues sends."""
    from workers.actors import bind
    from workers.broker import build_broker

    bind(build_broker(settings))
    return _services(settings)


def _shippo_command(settings: Settings, run: Any) -> int:
    """Run ``run(services)``; a failure is one line on stderr (exit 1), like the API's error."""
    from shippo_api.errors import ShippoError
    from store.errors import StoreError
    from workers.shippo_account import ShippoNotReady

    try:
        run(_shippo_services(settings))
    except ShippoError as exc:
        print(f"parcelhook: {exc.described}", file=sys.stderr)
        return 1
    except (ShippoNotReady, StoreError) as exc:
        print(f"parcelhook: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_shipments_refresh(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    """Look a shipment up at Shippo and process it like a track_updated webhook."""
    from admin.shippo_routes import refresh_and_view

    def run(s: Any) -> None:
        shipment = refresh_and_view(s, args.slug, args.carrier, args.tracking_number)
        print(json.dumps({"shipment": shipment}, indent=2), file=out)

    return _shippo_command(settings, run)


def cmd_merchants_connect_shippo(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    """Register the merchant's webhook URL with Shippo (idempotent)."""
    from admin.shippo_routes import register_and_list

    def run(s: Any) -> None:
        for webhook in register_and_list(s, args.slug):
            print(f"{webhook['event']:<22} {webhook['object_id']}  {webhook['url']}", file=out)

    return _shippo_command(settings, run)


def cmd_secrets_reencrypt(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    """Step 3 of a key rotation: everything encrypted under an older key moves to the newest one."""
    from store import merchants as merchant_store
    from store.database import Database

    db = Database(settings.database_url)
    try:
        with db.write() as conn:
            count = merchant_store.reencrypt_all(conn, settings.vault)
    finally:
        db.dispose()
    keys = len(settings.encryption_keys)
    print(f"re-encrypted the secrets of {count} merchant(s) with the newest key", file=out)
    if keys > 1:
        print(
            f"the other {keys - 1} key(s) in PARCELHOOK_ENCRYPTION_KEYS can be dropped now "
            "(restart every process after changing it)",
            file=out,
        )
    return 0


def cmd_secrets_new_key(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from store.vault import generate_key

    print(generate_key(), file=out)
    return 0


def cmd_scheduler(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from workers.clock import run_forever

    run_forever(settings, once=args.once)
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from admin.replay import replay

    return replay(args, settings, out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parcelhook", description="Shippo webhooks → order state → customer messages"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(func=cmd_migrate)

    merchants = sub.add_parser("merchants", help="manage merchants").add_subparsers(
        dest="action", required=True
    )
    create = merchants.add_parser("create", help="create a merchant and print its Shippo webhook URL")
    create.add_argument("slug")
    create.add_argument("--name", required=True)
    create.add_argument("--email-from")
    create.add_argument("--sms-from", help="E.164 number or Twilio Messaging Service SID")
    create.add_argument("--hmac-secret", help="require Shippo-Auth-Signature with this secret")
    create.add_argument(
        "--shippo-api-token", help="the merchant's Shippo API token (shippo_live_… / shippo_test_…)"
    )
    create.add_argument("--alert-email")
    create.add_argument("--default-locale")
    create.add_argument("--timezone")
    create.add_argument("--update", action="store_true", help="update the merchant if it exists")
    create.set_defaults(func=cmd_merchants_create)
    listing = merchants.add_parser("list", help="list merchants")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_merchants_list)
    show = merchants.add_parser("show", help="show a merchant, its token and webhook URL")
    show.add_argument("slug")
    show.set_defaults(func=cmd_merchants_show)
    rotate = merchants.add_parser("rotate-token", help="new webhook token; the old one works 24 h more")
    rotate.add_argument("slug")
    rotate.set_defaults(func=cmd_merchants_rotate)
    connect = merchants.add_parser(
        "connect-shippo", help="register the merchant's webhook URL with Shippo (needs its shippo_api_token)"
    )
    connect.add_argument("slug")
    connect.set_defaults(func=cmd_merchants_connect_shippo)
    for action in (create, listing, show, rotate, connect):  # they read or write merchant secrets
        action.set_defaults(needs_encryption_keys=True)

    shipments = sub.add_parser("shipments", help="shipments").add_subparsers(dest="action", required=True)
    refresh = shipments.add_parser(
        "refresh", help="look a shipment up at Shippo and process it like a track_updated webhook"
    )
    refresh.add_argument("slug")
    refresh.add_argument("carrier")
    refresh.add_argument("tracking_number")
    refresh.set_defaults(func=cmd_shipments_refresh, needs_encryption_keys=True)

    keys = sub.add_parser("secrets", help="the encryption of merchant secrets at rest (see README: Security)")
    keys_actions = keys.add_subparsers(dest="action", required=True)
    keys_actions.add_parser(
        "reencrypt", help="re-encrypt every merchant secret with the first key of PARCELHOOK_ENCRYPTION_KEYS"
    ).set_defaults(func=cmd_secrets_reencrypt, needs_encryption_keys=True)
    keys_actions.add_parser(
        "new-key", help="print a new key to put in front of PARCELHOOK_ENCRYPTION_KEYS"
    ).set_defaults(func=cmd_secrets_new_key)

    scheduler = sub.add_parser("scheduler", help="run periodic jobs (stalls, reconciliation, alerts)")
    scheduler.add_argument("--once", action="store_true", help="run every job once and exit")
    scheduler.set_defaults(func=cmd_scheduler)

    replay = sub.add_parser("replay", help="post Shippo bodies (.json/.jsonl) to a running receiver")
    replay.add_argument("files", nargs="+")
    replay.add_argument(
        "--merchant", required=True, help="merchant slug (token and HMAC secret read from the DB)"
    )
    replay.add_argument("--url", help="receiver base URL (default PARCELHOOK_PUBLIC_URL)")
    replay.add_argument("--secret", help="HMAC secret to sign with (default: the merchant's first secret)")
    replay.add_argument("--shuffle", action="store_true")
    replay.add_argument("--duplicates", type=int, default=0, help="post every body this many extra times")
    replay.add_argument("--delay", type=float, default=0.0, help="seconds between posts")
    replay.set_defaults(func=cmd_replay, needs_encryption_keys=True)

    try:
        from admin.ops_cli import add_ops_commands
    except ModuleNotFoundError:
        pass
    else:
        add_ops_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = load_or_exit(require_encryption_keys=getattr(args, "needs_encryption_keys", False))
    func = args.func
    out = out or sys.stdout
    if getattr(func, "__module__", "") == "admin.ops_cli":
        return int(func(args, _services(settings), out) or 0)
    return int(func(args, settings, out) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
