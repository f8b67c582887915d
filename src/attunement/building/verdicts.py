"""The inspector's verdicts: final for a query text, gated after the fact, counted.

**A verdict is final.** Asking an LLM inspector again about the same text
until it says yes turns a filter into a lottery: in one measured build four
``--redo rejected`` runs raised the pass rate from 31/54 to 58/59. So a verdict
is stored with a *verdict key* (the inspector model, prompt version, schema,
settings, the user and everything the inspector is shown of the query, but not
the generator's reasoning) and is never asked for again: a redo of a rejected
query draws a *new query* (the ``queries`` record is redone, its ``draw``
count goes up) and only a new text is inspected. A redrawn text that equals
one judged before gets the stored verdict, without a call.

**Gates apply to stored verdicts.** The inspector answers every check; which
checks must pass (``BuildConfig.inspection_gates``) is applied afterwards
(:func:`regated`), so changing the gates re-decides every stored verdict with
no call.

**Counted.** :func:`draw_stats` reports over the current queries how many
texts the inspector judged, how many it rejected, how many queries needed more
than one draw, and the mean draws per query; the build's report and manifest
carry it, so a dataset says how hard its inspector was to pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from attunement.building.calls import StageRecord


def failed_gates(checks: dict[str, bool], gates: Sequence[str]) -> list[str]:
    """The gates a verdict's checks fail, in gate order.

    >>> failed_gates({"role_awareness": False, "language": True}, ["language", "role_awareness"])
    ['role_awareness']
    """
    return [g for g in gates if not checks.get(g, False)]


def regated(rec: StageRecord, gates: Sequence[str]) -> StageRecord:
    """``rec`` (an inspection record with a verdict) decided under ``gates``;
    ``rec`` itself when that changes nothing or it holds no verdict."""
    checks = rec.output.get("checks")
    if not isinstance(checks, dict) or list(rec.output.get("gates", [])) == list(gates):
        return rec
    failed = failed_gates(checks, gates)
    reason = str(rec.output.get("reason", ""))
    output = {**rec.output, "passed": not failed, "gates": list(gates)}
    return rec.model_copy(
        update={
            "status": "rejected" if failed else "ok",
            "reason_code": f"{rec.stage}.{failed[0]}" if failed else None,
            "reason": f"failed {', '.join(failed)}: {reason}" if failed else None,
            "output": output,
        }
    )


class DrawStats(BaseModel):
    """How hard the inspector was to pass, over the current queries with a verdict."""

    model_config = ConfigDict(extra="forbid")

    queries: int = 0  # current queries with a verdict
    verdicts: int = 0  # texts the inspector judged for them, over every draw
    rejected_verdicts: int = 0  # of those, failing the current gates
    redrawn: int = 0  # queries whose current text is not their first draw
    draws: int = 0  # query texts drawn for them, over every draw

    @property
    def rejection_rate(self) -> float | None:
        return round(self.rejected_verdicts / self.verdicts, 4) if self.verdicts else None

    @property
    def redraw_rate(self) -> float | None:
        return round(self.redrawn / self.queries, 4) if self.queries else None

    @property
    def mean_draws(self) -> float | None:
        return round(self.draws / self.queries, 3) if self.queries else None

    def summary(self) -> dict[str, float | int | None]:
        """The counts and the rates, for the report and the manifest."""
        return {
            **self.model_dump(),
            "rejection_rate": self.rejection_rate,
            "redraw_rate": self.redraw_rate,
            "mean_draws": self.mean_draws,
        }


def draw_stats(
    keys: Iterable[str],
    queries: dict[str, StageRecord],
    verdict_history: Iterable[StageRecord],
    gates: Sequence[str],
) -> DrawStats:
    """:class:`DrawStats` of the query ``keys``: their current ``queries``
    records and every inspection record ever written for them."""
    keys = set(keys)
    seen: dict[tuple[str, str | None], StageRecord] = {}
    for rec in verdict_history:
        if rec.key in keys and isinstance(rec.output.get("checks"), dict):
            seen[(rec.key, rec.verdict_key or rec.fingerprint)] = rec
    judged = {key for key, _ in seen}
    stats = DrawStats(queries=len(judged), verdicts=len(seen))
    stats.rejected_verdicts = sum(
        1 for rec in seen.values() if failed_gates(rec.output["checks"], gates)
    )
    for key in judged:
        draw = queries[key].draw if key in queries else 1
        stats.draws += draw
        stats.redrawn += draw > 1
    return stats
