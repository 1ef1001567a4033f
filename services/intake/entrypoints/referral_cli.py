"""`safeguard referral list|status|ack|decide|strategy|checks|feedback|close` (DESIGN §3.1): the
reference client for staff systems on the command line. Readable lines by default, the reply
as JSON with `--json`; a failure is one line and exit status 1 (cli_common)."""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, get_args

from services.intake.entrypoints import staff_client as staff
from services.intake.entrypoints.cli_common import read_text, run
from services.intake.entrypoints.client import DEFAULT_URL
from services.intake.domain.listing import STATUSES
from shared.messages import Agency, ChecksOutcome, Pathway, StrategyDecision


def _item(i: dict[str, Any]) -> str:
    """One referral of the list in one line: reference, status, tracks, flags, the next deadline."""
    flags = [f for f, on in (("immediate risk", i["immediate_risk"]), ("out of hours", i["out_of_hours"]),
                             ("no further sharing", i["holding"]["no_further_sharing"]),
                             ("no family contact", i["holding"]["no_family_contact"])) if on]
    late = [c["clock"] for c in i["clocks"] if c["state"] == "overdue"]
    due = (f"OVERDUE {', '.join(late)}" if late else
           f"next due {i['next_due']}" if i["next_due"] else "no clock running")
    return (f"{i['reference']}  {i['status']:<12}  LA {i['tracks']['la']['status']}, CTP {i['tracks']['ctp']['status']}"
            f"  received {i['received_at']}  {due}" + (f"  [{'; '.join(flags)}]" if flags else ""))


def _status_lines(r: dict[str, Any]) -> list[str]:
    tracks = f"LA {r['tracks']['la']['status']}, CTP {r['tracks']['ctp']['status']}"
    head = f"{r['reference']}  {r['status']}  ({tracks})  {r['la_code']} / {r['force']}  age band {r['age_band']}"
    lines = [head, f"  acknowledge by {r['acknowledge_by']}, checks due by {r['checks_due_by']}"]
    lines += [f"  {s['at']}  {s['event']}  by {s.get('by_name') or s['by']}" for s in r["timeline"]]
    return lines


def _action_line(r: dict[str, Any]) -> str:
    extra = {k: v for k, v in r.items() if k not in ("reference", "status", "action", "tracks")}
    return f"{r['reference']}: {r['action']} recorded; status {r['status']}" + "".join(
        f", {k} {json.dumps(v) if isinstance(v, (list, bool)) or v is None else v}" for k, v in extra.items())


def _printer(args: argparse.Namespace, render):
    def ok(_status: int, reply: Any) -> int:
        print(json.dumps(reply, indent=2, ensure_ascii=False) if args.json else "\n".join(render(reply)))
        return 0
    return ok


def _body(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.referral_command == "decide":
        rationale = read_text(args.rationale_file)
        return {"pathway": args.pathway, **({"rationale": rationale} if rationale is not None else {})}
    if args.referral_command == "checks":
        return {"outcome": args.outcome, **({"notes": read_text(args.notes_file)} if args.notes_file else {})}
    if args.referral_command == "feedback":
        return {"family_contact": "keep"} if args.keep_family_hold else None
    if args.referral_command == "strategy":
        return {"held_at": args.held_at, "agencies": [a.strip() for a in args.agencies.split(",") if a.strip()],
                "decision": args.decision, "legal_advice_sought": args.legal_advice == "yes",
                "parents_informed": args.parents_informed == "yes",
                **({"notes": read_text(args.notes_file)} if args.notes_file else {})}
    return None


def _cmd(args: argparse.Namespace) -> int:
    caller = staff.Caller(args.client_id, args.key, args.url, args.on_behalf_of)
    prog = f"safeguard referral {args.referral_command}"
    if args.referral_command == "list":
        filters = {"status": args.status, "overdue": args.overdue, "updated_since": args.updated_since,
                   "cursor": args.cursor, "limit": args.limit}
        render = lambda r: [_item(i) for i in r["items"]] + (  # noqa: E731
            [f"(more: --cursor {r['next_cursor']})"] if r["next_cursor"] else [])
        return run(prog, args.url, lambda: staff.list_referrals(caller, all_pages=args.all_pages, **filters),
                   _printer(args, render))
    if args.referral_command == "status":
        return run(prog, args.url, lambda: staff.status(caller, args.reference), _printer(args, _status_lines))
    return run(prog, args.url, lambda: staff.act(caller, args.reference, args.referral_command, _body(args)),
               _printer(args, lambda r: [_action_line(r)]))


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    client_id, key = os.environ.get("SAFEGUARD_CLIENT_ID"), os.environ.get("SAFEGUARD_CLIENT_KEY")
    common.add_argument("--client-id", default=client_id, required=client_id is None,
                        help="the client id (default $SAFEGUARD_CLIENT_ID)")
    common.add_argument("--key", default=key, required=key is None, metavar="FILE",
                        help="the client's Ed25519 key file (default $SAFEGUARD_CLIENT_KEY)")
    common.add_argument("--url", default=os.environ.get("SAFEGUARD_INTAKE_URL", DEFAULT_URL))
    common.add_argument("--on-behalf-of", metavar='\'iss="…", sub="…", name="…"\'',
                        help="the person the system acts for (sent as the signed On-Behalf-Of field)")
    common.add_argument("--json", action="store_true", help="print the reply as JSON")
    ref = argparse.ArgumentParser(add_help=False, parents=[common])
    ref.add_argument("reference", metavar="REFERENCE")
    group = sub.add_parser("referral", help="the reference client for staff systems (signed calls to intake)")
    cmds = group.add_subparsers(dest="referral_command", required=True)
    ls = cmds.add_parser("list", parents=[common], help="my organisation's referrals, newest first")
    ls.add_argument("--status", choices=STATUSES)
    ls.add_argument("--overdue", action="store_true", help="only referrals with a clock past due")
    ls.add_argument("--updated-since", metavar="ISO8601")
    ls.add_argument("--cursor")
    ls.add_argument("--limit", type=int)
    ls.add_argument("--all-pages", action="store_true", help="follow next_cursor to the last page")
    cmds.add_parser("status", parents=[ref], help="a referral's status and timeline (no content)")
    cmds.add_parser("ack", parents=[ref], help="acknowledge (social_care)")
    dc = cmds.add_parser("decide", parents=[ref], help="decide the pathway (social_care)")
    dc.add_argument("--pathway", required=True, choices=get_args(Pathway))
    dc.add_argument("--rationale-file", metavar="FILE", help="the rationale (sealed to the teams)")
    st = cmds.add_parser("strategy", parents=[ref], help="record the strategy discussion (social_care)")
    st.add_argument("--held-at", required=True, metavar="ISO8601", help="with an offset")
    st.add_argument("--agencies", required=True, help=f"comma-separated: {', '.join(get_args(Agency))}")
    st.add_argument("--decision", required=True, choices=get_args(StrategyDecision))
    st.add_argument("--legal-advice", required=True, choices=("yes", "no"))
    st.add_argument("--parents-informed", required=True, choices=("yes", "no"))
    st.add_argument("--notes-file", metavar="FILE", help="notes (sealed to the teams)")
    ch = cmds.add_parser("checks", parents=[ref], help="record the CTP checks outcome (prevent)")
    ch.add_argument("--outcome", required=True, choices=get_args(ChecksOutcome))
    ch.add_argument("--notes-file", metavar="FILE", help="notes (sealed to the teams)")
    fb = cmds.add_parser("feedback", parents=[ref], help="release feedback (prevent)")
    fb.add_argument("--keep-family-hold", action="store_true", help="keep the family-contact hold on")
    cmds.add_parser("close", parents=[ref], help="close my own track (social_care: LA; prevent: CTP)")
    group.set_defaults(func=_cmd)
