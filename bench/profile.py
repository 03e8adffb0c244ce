"""Where the CPU goes on the hot paths, per event: `python -m bench.profile`.

Profiles, with cProfile and in-process, what every event costs in pure Python: ingest's
validation of a batch, a consumer's decoding of a record, and complaints' fold of one
opening into a complaint's stored state (workflow and SLA clocks). Writes
bench/results/profile.txt; docs/benchmarks.md cites it for what bounds the
figures.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.run import complaint_event, purchase_event
from services.complaints import fold, sla
from services.complaints.settings import ComplaintsSettings
from services.ingest.domain import validate_batch
from shared.events import ValidationContext, decode_event, validate_event

N = 5000
OUT = Path(__file__).parent / "results" / "profile.txt"


def measure(label: str, work: Callable[[], object], per: int) -> str:
    started = time.perf_counter()
    work()
    micros = (time.perf_counter() - started) / per * 1e6
    profile = cProfile.Profile()
    profile.runcall(work)
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(8)
    top = "\n".join(line for line in text.getvalue().splitlines() if line.strip())
    return f"## {label}: {micros:.1f} us each\n{top}\n"


def main() -> None:
    context = ValidationContext()
    raw = [purchase_event(i) for i in range(N)]
    events, _ = validate_batch(raw, context)
    bodies = [e.to_bytes() for e in events]
    config = ComplaintsSettings().sla_config()
    opened = [validate_event(complaint_event(i), context) for i in range(N // 10)]
    now = datetime.now(UTC)

    def fold_openings() -> None:
        for e in opened:
            start = fold.new_folded(e.data.complaint_id, e.subject)  # type: ignore[attr-defined]
            folded = fold.derive(start, [e], [], config)
            sla.state_to_json(folded.clocks)
            sla.schedule(folded.clocks, now, config)

    report = [
        measure(
            "ingest: validate and normalise one event of a batch",
            lambda: [e.to_bytes() for e in validate_batch(raw, context)[0]],
            N,
        ),
        measure(
            "consumer: decode and validate one record",
            lambda: [decode_event(b, context) for b in bodies],
            N,
        ),
        measure("complaints: fold one opening (workflow + SLA clocks)", fold_openings, len(opened)),
    ]
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text("\n".join(report))
    print("\n".join(r.splitlines()[0] for r in report))


if __name__ == "__main__":
    main()
