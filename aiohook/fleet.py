"""Plan many domain XML files in turn, one at a time (`aiohook plan`, `aiohook rewrite`)."""

from __future__ import annotations

from aiohook.domxml.files import input_label, read_xml
from aiohook.errors import AiohookError


def iter_plans(paths, ruleset, probe, errors: list | None = None, *, explain: bool = False):
    """Plan each input in turn. With an `errors` list, a bad input is recorded there
    as (path, message, exit code) and skipped; without one, the error is raised."""
    from aiohook.planner import plan_xml

    for path in paths:
        try:
            plan = plan_xml(read_xml(path), input_label(path), ruleset, probe, explain=explain)
        except AiohookError as exc:
            if errors is None:
                raise
            errors.append((path, exc.one_line(), exc.exit_code))
            continue
        from aiohook.budget.demand import demand_for

        plan.aio = demand_for(plan)  # AIO demand of the domain as rewritten (a contract)
        yield plan
