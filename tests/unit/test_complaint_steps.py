"""Issue 15 item 4: the seven handling steps are an order. Agents' commands are checked
against it (strict by default, skippable steps by policy), each step's first completion is
recorded with the instant its turn began, and the durations report counts, averages and
ranks them. Every expected instant and figure below is counted by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.complaints.business_time import Calendar, business_elapsed
from services.complaints.domain import (
    STEP_ORDER,
    Complaint,
    Invalid,
    Rejected,
    StepDone,
    StepPolicy,
    StepStats,
    check_step,
    decide,
    derive,
    reached,
    sla_event,
    step_durations,
)
from services.complaints.sla import EventKind
from shared.events import (
    ComplaintClosed,
    ComplaintResolved,
    ComplaintSolutionProposed,
    ComplaintStepDone,
    Event,
    EventData,
    ValidationContext,
    redact_body,
    validate_event,
)
from tests.helpers import event

CONTEXT = ValidationContext(future_tolerance=timedelta(days=3650))
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)  # a Monday
LATER = T0 + timedelta(days=30)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def history(*steps: tuple[str, float, dict[str, Any]]) -> list[Event]:
    """A complaint opened at T0, then (type, minutes after T0, data) steps."""
    opened = ("opened", 0.0, {"channel": "chat", "category": "delivery"})
    return [
        validate_event(
            event(
                f"crm.complaint.{kind}",
                "cust-1",
                {"complaint_id": "c1", **data},
                time=at(minutes),
                event_id=f"e{n:02d}",
            ),
            CONTEXT,
        )
        for n, (kind, minutes, data) in enumerate([opened, *steps])
    ]


def done(step: str, minutes: float) -> tuple[str, float, dict[str, Any]]:
    return ("step_done", minutes, {"step": step})


PROPOSED = ("solution_proposed", 50.0, {"promised_at": LATER.isoformat()})
FIRST_FOUR = [done("listen", 5), done("thank", 6), done("apologise", 8), done("promise", 20)]


def state_of(*steps: tuple[str, float, dict[str, Any]]) -> Complaint:
    return derive("c1", "cust-1", history(*steps))


def step_data(step: str) -> ComplaintStepDone:
    return ComplaintStepDone.model_validate({"complaint_id": "c1", "step": step})


def proposal() -> ComplaintSolutionProposed:
    return ComplaintSolutionProposed(complaint_id="c1", promised_at=LATER)


def command(state: Complaint, name: str, policy: StepPolicy | None = None) -> str:
    data: EventData
    if name in ("listen", "thank", "apologise", "promise", "follow_up"):
        data = step_data(name)
    elif name == "propose":
        data = proposal()
    elif name == "resolve":
        data = ComplaintResolved(complaint_id="c1")
    else:
        data = ComplaintClosed(complaint_id="c1")
    return decide(state, name, data) if policy is None else decide(state, name, data, policy)


def refusal(state: Complaint, name: str, policy: StepPolicy | None = None) -> Rejected:
    with pytest.raises(Rejected) as refused:
        command(state, name, policy)
    return refused.value


# ---- the order, strict ---------------------------------------------------------------------


def test_strict_order_refuses_every_step_whose_predecessor_is_not_done() -> None:
    opened = state_of()
    assert command(opened, "listen") == "crm.complaint.step_done"
    for name, missing in [
        ("thank", "listen"),
        ("apologise", "listen"),
        ("promise", "listen"),
        ("propose", "listen"),
        ("resolve", "listen"),  # today's shortcut from "opened"
    ]:
        refused = refusal(opened, name)
        assert refused.field == f"steps.{missing}", name
        assert "step 1 of 7, 'listen'" in str(refused)
    after_thank = state_of(done("listen", 5), done("thank", 6))
    assert refusal(after_thank, "resolve").field == "steps.apologise"
    assert command(after_thank, "apologise") == "crm.complaint.step_done"


def test_walking_the_seven_steps_allows_each_in_turn_and_close_after_the_follow_up() -> None:
    walked: list[tuple[str, float, dict[str, Any]]] = []
    script = [
        ("listen", done("listen", 5)),
        ("thank", done("thank", 6)),
        ("apologise", done("apologise", 8)),
        ("promise", done("promise", 20)),
        ("propose", PROPOSED),
        ("resolve", ("resolved", 200.0, {})),
        ("follow_up", done("follow_up", 260)),
    ]
    for name, happened in script:
        assert command(state_of(*walked), name)  # allowed now
        walked.append(happened)
    resolved_only = state_of(*walked[:-1])
    assert resolved_only.status == "resolved"
    refused = refusal(resolved_only, "close")
    assert refused.field == "steps.follow_up"
    assert command(state_of(*walked), "close") == "crm.complaint.closed"
    # The status rule comes first: closing an unresolved complaint names the status.
    assert refusal(state_of(*walked[:4]), "close").field == "status"


def test_the_handling_cannot_go_back_but_may_repeat_its_latest_step() -> None:
    proposed = state_of(*FIRST_FOUR, PROPOSED)
    refused = refusal(proposed, "thank")
    assert refused.field == "steps.thank"
    assert "past it ('propose' is done" in str(refused)
    assert command(proposed, "propose")  # a revised proposal
    revised = state_of(*FIRST_FOUR, PROPOSED, ("solution_proposed", 70.0, {}))
    assert [s.done_at for s in revised.steps if s.step == "propose"] == [at(50)]  # the first


def test_a_proposal_needs_its_timetable() -> None:
    state = state_of(*FIRST_FOUR)
    with pytest.raises(Invalid) as refused:
        decide(state, "propose", ComplaintSolutionProposed(complaint_id="c1"))
    assert refused.value.field == "body.promised_at"


def test_follow_up_waits_for_the_solution_carried_out() -> None:
    proposed = state_of(*FIRST_FOUR, PROPOSED)
    assert refusal(proposed, "follow_up").field == "status"


# ---- relaxations ---------------------------------------------------------------------------


def test_skippable_steps_may_be_left_out_and_are_then_passed_for_good() -> None:
    relaxed = StepPolicy(frozenset({"thank", "apologise"}))
    listened = state_of(done("listen", 5))
    assert command(listened, "promise", relaxed) == "crm.complaint.step_done"
    assert refusal(listened, "promise").field == "steps.thank"  # strict: not allowed
    promised = state_of(done("listen", 5), done("promise", 20))
    assert refusal(promised, "thank", relaxed).field == "steps.thank"  # too late


def test_skipping_every_skippable_step_resolves_and_closes_as_before() -> None:
    everything = StepPolicy(frozenset(STEP_ORDER) - {"carry_out"})
    assert command(state_of(), "resolve", everything) == "crm.complaint.resolved"
    resolved = state_of(("resolved", 30.0, {}))
    assert command(resolved, "close", everything) == "crm.complaint.closed"


def test_carrying_out_cannot_be_made_skippable() -> None:
    with pytest.raises(ValueError, match="carry_out"):
        StepPolicy(frozenset({"carry_out"}))


def test_a_reopen_repeats_propose_carry_out_and_follow_up() -> None:
    cycle0 = [*FIRST_FOUR, PROPOSED, ("resolved", 200.0, {}), done("follow_up", 260)]
    reopened = state_of(*cycle0, ("reopened", 300.0, {}))
    assert reached(reopened) == STEP_ORDER.index("promise")
    assert refusal(reopened, "listen").field == "steps.listen"  # the conversation was had
    assert refusal(reopened, "resolve").field == "steps.propose"
    assert command(reopened, "propose")
    again: list[tuple[str, float, dict[str, Any]]] = [
        ("solution_proposed", 330.0, {}),
        ("resolved", 400.0, {}),
    ]
    resolved_again = state_of(*cycle0, ("reopened", 300.0, {}), *again)
    assert refusal(resolved_again, "close").field == "steps.follow_up"  # followed up anew


def test_steps_done_elsewhere_never_block_the_order() -> None:
    """A proposal that came from another system (or before this version) with no first
    steps recorded: those are passed; the handling goes on from the proposal."""
    proposed = state_of(PROPOSED)
    assert command(proposed, "resolve") == "crm.complaint.resolved"
    assert refusal(proposed, "listen").field == "steps.listen"


# ---- what the fold records -----------------------------------------------------------------


def test_each_step_is_recorded_once_with_the_instant_its_turn_began() -> None:
    state = state_of(
        *FIRST_FOUR,
        done("thank", 9),  # a repeat: not a new completion
        PROPOSED,
        ("resolved", 200.0, {}),
        ("feedback", 240.0, {"score": 4}),  # the satisfaction known: followed up
        ("reopened", 300.0, {}),
        ("solution_proposed", 330.0, {}),
    )
    assert state.steps == (
        StepDone("listen", 0, at(0), at(5)),
        StepDone("thank", 0, at(5), at(6)),
        StepDone("apologise", 0, at(6), at(8)),
        StepDone("promise", 0, at(8), at(20)),
        StepDone("propose", 0, at(20), at(50)),
        StepDone("carry_out", 0, at(50), at(200)),
        StepDone("follow_up", 0, at(200), at(240)),
        StepDone("propose", 1, at(300), at(330)),  # from the reopening
    )
    assert state.reopened_at == at(300)


def test_a_skipped_step_s_time_counts_in_the_next_one() -> None:
    state = state_of(done("listen", 5), done("promise", 45))
    assert state.steps[-1] == StepDone("promise", 0, at(5), at(45))


def test_the_first_steps_are_the_first_response_and_move_the_status() -> None:
    listened = state_of(done("listen", 5))
    assert (listened.status, listened.first_response_at) == ("acknowledged", at(5))
    promised = state_of(done("listen", 5), done("promise", 20))
    assert (promised.status, promised.first_response_at) == ("investigating", at(5))
    listen, follow_up = history(done("listen", 5), done("follow_up", 9))[1:]
    clock_step = sla_event(listen)
    assert clock_step is not None
    assert clock_step.kind is EventKind.RESPONDED
    assert sla_event(follow_up) is None


def test_a_step_before_the_opening_is_known_has_no_start() -> None:
    events = history(done("listen", 5))[1:]  # the opening not (yet) seen
    assert derive("c1", "cust-1", events).steps == (StepDone("listen", 0, None, at(5)),)


def test_check_step_names_the_first_missing_step() -> None:
    with pytest.raises(Rejected) as refused:
        check_step(state_of(done("listen", 5)), "carry_out")
    assert refused.value.field == "steps.thank"


# ---- durations -----------------------------------------------------------------------------


def listened(started: float, finished: float, step: str = "listen") -> StepDone:
    return StepDone(step, 0, at(started), at(finished))


def test_durations_count_mean_median_and_p90_by_hand() -> None:
    done_steps = [
        listened(0, 10),
        listened(0, 20),
        listened(10, 40),
        listened(0, 100),
        listened(0, 50, "thank"),
        StepDone("thank", 0, None, at(60)),  # start unknown: not counted
        listened(0, 600, "apologise"),  # done at the period's end: outside [start, end)
        listened(-30, -10, "promise"),  # before the period
    ]
    stats = {s.step: s for s in step_durations(done_steps, T0, at(600))}
    assert list(stats) == list(STEP_ORDER)
    # listen: 10, 20, 30, 100 minutes. Mean 160/4 = 40; median (20+30)/2 = 25; p90 at rank
    # 0.9 * 3 = 2.7: 30 + 0.7 * (100 - 30) = 79 minutes.
    assert stats["listen"] == StepStats(
        "listen", 4, timedelta(minutes=40), timedelta(minutes=25), timedelta(minutes=79)
    )
    fifty = timedelta(minutes=50)
    assert stats["thank"] == StepStats("thank", 1, fifty, fifty, fifty)
    for empty in ("apologise", "promise", "propose", "carry_out", "follow_up"):
        assert stats[empty] == StepStats(empty, 0, None, None, None)


def test_durations_in_business_hours_leave_out_the_weekend_and_lunch() -> None:
    """Mon-Fri 09:00-12:00 and 13:00-18:00 UTC. Carried out from Friday 17:00 to Monday
    10:00: 1 hour on Friday, 1 on Monday (65 wall hours). From Monday 11:00 to 14:00: 2
    business hours (lunch left out), 3 wall hours."""
    office = Calendar.from_hours("UTC", "09:00-12:00,13:00-18:00")
    friday_17 = datetime(2026, 3, 6, 17, tzinfo=UTC)
    monday = datetime(2026, 3, 9, tzinfo=UTC)
    done_steps = [
        StepDone("carry_out", 0, friday_17, monday + timedelta(hours=10)),
        StepDone("carry_out", 0, monday + timedelta(hours=11), monday + timedelta(hours=14)),
    ]
    start, end = friday_17, monday + timedelta(days=1)
    business = step_durations(done_steps, start, end, lambda a, b: business_elapsed(office, a, b))
    wall = step_durations(done_steps, start, end)
    carried = STEP_ORDER.index("carry_out")
    hours = timedelta(hours=1)
    assert business[carried] == StepStats("carry_out", 2, 2 * hours, 2 * hours, 2 * hours)
    # Wall: 65 and 3 hours; mean 34; p90 at rank 0.9: 3 + 0.9 * 62 = 58.8 hours.
    assert wall[carried] == StepStats("carry_out", 2, 34 * hours, 34 * hours, timedelta(hours=58.8))


def test_an_erasure_removes_what_the_agent_noted_and_keeps_the_step() -> None:
    raw = event(
        "crm.complaint.step_done",
        "cust-1",
        {"complaint_id": "c1", "step": "listen", "notes": "Li Wei, 138 0000 0000: kettle"},
        time=at(5),
    )
    redacted = redact_body(validate_event(raw, CONTEXT).to_json_dict())
    assert redacted["data"] == {"complaint_id": "c1", "step": "listen"}
