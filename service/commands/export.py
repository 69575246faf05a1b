"""``distillguard export``: the flagged accounts and the suspicious campaigns of an audit, with
the campaigns' indicators (IP addresses and ranges, user agents, prompt-template and
system-prompt fingerprints, payment fingerprints, e-mail domains: ``indicators.parquet``, see
:mod:`detector.indicators`), as CSV, JSON or a STIX 2.1 bundle for sharing with other providers.

A campaign is exported when it is *suspicious* (its typical member is unusual on its own, so it
lifts its members: ``lift > 0``); a group of linked but ordinary accounts (a company behind one
NAT) is not, and neither are its values. Allow-listed accounts are never flagged, so never
exported as flagged.

STIX 2.1 (through the ``stix2`` library, the ``stix`` extra): one ``identity`` (distillguard),
a ``campaign`` per suspicious campaign, an ``indicator`` per value with a STIX pattern where
STIX has an object for it (``ipv4-addr`` / ``ipv6-addr`` values and ranges, the HTTP
``User-Agent`` header of ``network-traffic``, ``email-addr`` by domain, ``user-account`` for a
flagged account) and ``pattern_type`` ``distillguard`` for distillguard's own fingerprints, and
an ``indicates`` ``relationship`` from each indicator to its campaign. Identifiers are derived
from the values (UUIDv5), so exporting again names the same objects.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer

from detector.indicators import INDICATOR_SCHEMA
from detector.severity import severity
from service.commands.options import err, fail

NAMESPACE = uuid.UUID("5f0c3c8e-4d0e-5b43-9a57-6a1c0f2d7e11")  # distillguard's UUIDv5 namespace
CSV_COLUMNS = ("kind", "value", "campaign_id", "score", "severity", "detail")


class Format(StrEnum):
    csv = "csv"
    json = "json"
    stix = "stix"


# ---------------------------------------------------------------------------- reading an audit


def load_audit(audit_dir: Path) -> dict[str, Any]:
    """What an audit directory holds for export: ``threshold``, the flagged ``accounts``, the
    suspicious ``campaigns`` and their ``indicators``. Raises FileNotFoundError."""
    summary_path = audit_dir / "summary.json"
    accounts_path = audit_dir / "accounts.parquet"
    for p in (summary_path, accounts_path):
        if not p.exists():
            raise FileNotFoundError(f"{p}: not found (is {audit_dir} the --out of an audit?)")
    summary = json.loads(summary_path.read_text())
    accounts = pl.read_parquet(accounts_path).filter(pl.col("flagged"))
    campaigns = pl.DataFrame()
    if (audit_dir / "campaigns.parquet").exists():
        campaigns = pl.read_parquet(audit_dir / "campaigns.parquet")
    if campaigns.height:
        campaigns = campaigns.filter(pl.col("lift") > 0).sort("score", descending=True)
    indicators = pl.DataFrame(schema=INDICATOR_SCHEMA)
    if (audit_dir / "indicators.parquet").exists() and campaigns.height:
        indicators = pl.read_parquet(audit_dir / "indicators.parquet").join(
            campaigns.select("campaign_id"), on="campaign_id", how="semi"
        )
    return {
        "threshold": float(summary["threshold"]),
        "accounts": accounts.select("account_id", "score", "reasons", "campaign_id").sort(
            "score", descending=True
        ),
        "campaigns": campaigns,
        "indicators": indicators,
    }


def _campaign_rows(audit: dict[str, Any]) -> list[dict[str, Any]]:
    inds: pl.DataFrame = audit["indicators"]
    out = []
    for row in audit["campaigns"].iter_rows(named=True) if audit["campaigns"].height else []:
        mine = inds.filter(pl.col("campaign_id") == row["campaign_id"])
        grouped: dict[str, list[dict[str, Any]]] = {}
        for ind in mine.iter_rows(named=True):
            grouped.setdefault(ind["kind"], []).append(
                {"value": ind["value"], "holders": ind["holders"], "total": ind["total"]}
            )
        out.append(
            {
                "campaign_id": row["campaign_id"],
                "score": row["score"],
                "severity": severity(row["score"]),
                "n_members": row["n_members"],
                "members": list(row["members"]),
                "evidence": list(row["evidence"]),
                "indicators": grouped,
            }
        )
    return out


def _account_rows(audit: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "account_id": r["account_id"],
            "score": r["score"],
            "severity": severity(r["score"]),
            "campaign_id": r["campaign_id"],
            "reasons": list(r["reasons"] or []),
        }
        for r in audit["accounts"].iter_rows(named=True)
    ]


# ---------------------------------------------------------------------------- formats


def to_json(audit: dict[str, Any], source: Path) -> str:
    doc = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": str(source),
        "threshold": audit["threshold"],
        "accounts": _account_rows(audit),
        "campaigns": _campaign_rows(audit),
    }
    return json.dumps(doc, indent=2) + "\n"


def to_csv(audit: dict[str, Any]) -> str:
    """One row per flagged account, suspicious campaign and indicator value."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for a in _account_rows(audit):
        w.writerow(
            ["account", a["account_id"], a["campaign_id"] or "", f"{a['score']:.4f}",
             a["severity"] or "", " | ".join(a["reasons"])]
        )  # fmt: skip
    for c in _campaign_rows(audit):
        score, sev = f"{c['score']:.4f}", c["severity"] or ""
        w.writerow(["campaign", c["campaign_id"], c["campaign_id"], score, sev, c["evidence"][0]])
        for kind, values in c["indicators"].items():
            for v in values:
                detail = (
                    f"held by {v['holders']} of {c['n_members']} members "
                    f"({v['total']} accounts in the log)"
                )
                w.writerow([kind, v["value"], c["campaign_id"], score, sev, detail])
    return buf.getvalue()


def _quote(value: str) -> str:
    """A STIX pattern string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def stix_pattern(kind: str, value: str) -> tuple[str, str] | None:
    """``(pattern, pattern_type)`` of one indicator value; None for a value no pattern can hold
    (a masked IP such as Azure's ``203.0.113.***``)."""
    if kind in ("ip", "ip_range"):
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            return None
        text = str(net.network_address) if net.num_addresses == 1 else str(net)
        sco = "ipv4-addr" if net.version == 4 else "ipv6-addr"
        return f"[{sco}:value = {_quote(text)}]", "stix"
    if kind == "user_agent":
        header = "network-traffic:extensions.'http-request-ext'.request_header.'User-Agent'"
        return f"[{header} = {_quote(value)}]", "stix"
    if kind == "email_domain":
        return f"[email-addr:value LIKE {_quote('%@' + value)}]", "stix"
    if kind == "account":
        return f"[user-account:user_id = {_quote(value)}]", "stix"
    return f"{kind} = {_quote(value)}", "distillguard"


def _id(kind: str, *parts: str) -> str:
    return f"{kind}--{uuid.uuid5(NAMESPACE, '|'.join((kind, *parts)))}"


def to_stix(audit: dict[str, Any]) -> str:
    """A STIX 2.1 bundle (see the module docstring)."""
    try:
        import stix2
    except ImportError:
        raise fail(
            "--format stix needs the stix2 library: pip install 'distillguard[stix]'"
        ) from None
    now = datetime.now(UTC)
    me = stix2.Identity(
        id=_id("identity", "distillguard"),
        name="distillguard",
        identity_class="system",
        description="Distillation / model-extraction detection from LLM API request logs.",
    )
    objects: list[Any] = [me]
    campaign_ids: dict[str, str] = {}
    for c in _campaign_rows(audit):
        cid = c["campaign_id"]
        camp = stix2.Campaign(
            id=_id("campaign", cid),
            created_by_ref=me.id,
            name=f"distillation campaign {cid}",
            description="; ".join(c["evidence"]),
            objective="harvest model outputs to train another model (distillation)",
        )
        campaign_ids[cid] = camp.id
        objects.append(camp)
        for kind, values in c["indicators"].items():
            for v in values:
                found = stix_pattern(kind, v["value"])
                if found is None:
                    continue
                pattern, pattern_type = found
                ind = stix2.Indicator(
                    id=_id("indicator", cid, kind, v["value"]),
                    created_by_ref=me.id,
                    name=f"{kind.replace('_', ' ')} of distillation campaign {cid}",
                    description=(
                        f"{kind} {v['value']}: held by {v['holders']} of the campaign's "
                        f"{c['n_members']} accounts ({v['total']} accounts in the audited log)"
                    ),
                    indicator_types=["anomalous-activity"],
                    pattern=pattern,
                    pattern_type=pattern_type,
                    valid_from=now,
                )
                objects.append(ind)
                objects.append(_indicates(stix2, me.id, ind.id, camp.id))
    for a in _account_rows(audit):
        pattern, pattern_type = stix_pattern("account", a["account_id"]) or ("", "")
        ind = stix2.Indicator(
            id=_id("indicator", "account", a["account_id"]),
            created_by_ref=me.id,
            name=f"flagged account {a['account_id']} (score {a['score']:.2f}, "
            f"{a['severity'] or 'below the severity bands'})",
            description="\n".join(a["reasons"]) or "a combination of moderate signals",
            indicator_types=["anomalous-activity"],
            pattern=pattern,
            pattern_type=pattern_type,
            valid_from=now,
        )
        objects.append(ind)
        if a["campaign_id"] in campaign_ids:
            objects.append(_indicates(stix2, me.id, ind.id, campaign_ids[a["campaign_id"]]))
    bundle = stix2.Bundle(objects=objects, id=_id("bundle", *(o.id for o in objects)))
    return str(bundle.serialize(pretty=True)) + "\n"


def _indicates(stix2: Any, me: str, source: str, target: str) -> Any:
    return stix2.Relationship(
        id=_id("relationship", source, "indicates", target),
        created_by_ref=me,
        relationship_type="indicates",
        source_ref=source,
        target_ref=target,
    )


# ---------------------------------------------------------------------------- the command


def export(
    audit_dir: Annotated[
        Path, typer.Argument(help="An audit's output directory (distillguard audit --out).")
    ],
    fmt: Annotated[Format, typer.Option("--format", help="csv, json or stix (STIX 2.1).")] = (
        Format.csv
    ),
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here (default: standard output).")
    ] = None,
) -> None:
    """Export an audit's flagged accounts and campaign indicators (CSV, JSON, STIX 2.1).

    Indicators: the IP addresses and ranges, user agents, prompt-template fingerprints, payment
    fingerprints and e-mail domains the members of each suspicious campaign share."""
    try:
        audit = load_audit(audit_dir)
    except (FileNotFoundError, KeyError, ValueError, OSError, pl.exceptions.PolarsError) as exc:
        raise fail(str(exc)) from None
    if fmt is Format.csv:
        text = to_csv(audit)
    elif fmt is Format.json:
        text = to_json(audit, audit_dir)
    else:
        text = to_stix(audit)
    n_acc, n_camp = audit["accounts"].height, audit["campaigns"].height
    counts = (
        f"{n_acc:,} flagged accounts, {n_camp:,} suspicious campaigns, "
        f"{audit['indicators'].height:,} campaign indicators"
    )
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        typer.echo(str(out))
    err.print(f"{counts} ({fmt.value})", highlight=False)
