"""The four stages of crisis handling, in order, and which moves between them are allowed.
Pure.

identify (识别: the alert is raised; monitor volume and sentiment, assess the risk) ->
respond (响应: act fast, calm the customers, contain) -> control (控制: release information)
-> recover (恢复: rebuild trust, compensate). An alert starts in identify; an agent moves it
one stage forward at a time. A move back, a skip or a move to the stage it is in is refused
with the reason.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    IDENTIFY = "identify"
    RESPOND = "respond"
    CONTROL = "control"
    RECOVER = "recover"


ORDER: tuple[Stage, ...] = tuple(Stage)
FIRST = Stage.IDENTIFY
NAMES_ZH = {
    Stage.IDENTIFY: "识别",
    Stage.RESPOND: "响应",
    Stage.CONTROL: "控制",
    Stage.RECOVER: "恢复",
}


class StageRefused(Exception):
    """The move is out of order; the message says why and what is allowed."""


def next_stage(current: Stage) -> Stage | None:
    """The only stage `current` may move to; None after the last."""
    position = ORDER.index(current)
    return ORDER[position + 1] if position + 1 < len(ORDER) else None


def check_move(current: Stage, requested: Stage) -> Stage:
    """`requested` if it is the stage after `current`; else raise StageRefused."""
    allowed = next_stage(current)
    if requested == allowed:
        return requested
    order = " -> ".join(ORDER)
    if requested == current:
        reason = f"the alert is in {current} already"
    elif ORDER.index(requested) < ORDER.index(current):
        reason = f"the alert is in {current}: stages only move forward ({order})"
    else:
        reason = f"{requested} cannot follow {current}: {allowed} comes first ({order})"
    if allowed is None:
        reason += f"; {current} is the last stage"
    raise StageRefused(reason)
